"""DCGN loss: Gaussian-mixture negative log-likelihood of the pixel colours, with the mixture read off the softmax.

The network's softmax γ (N pixels × K) is the E-step posterior; the M-step is closed form and differentiable in γ:
``N_k = Σ γ_nk``, ``α_k = N_k / N``, ``μ_k = Σ γ_nk x_n / N_k``, ``Σ_k = Σ γ_nk (x_n − μ_k)(x_n − μ_k)ᵀ / N_k``. The loss
is then, as the official code trains it (``objective="marginal"``):

    − mean_n log Σ_k (α_k 𝒩(x_n; μ_k, Σ_k) + ε)   +   λ Σ_k Σ_c |μ_kc − X̄_c| / s_c

with X̄ and s the batch mean and standard deviation of each channel (the "centralised constraint"; ``normaliser=
"variance"`` divides by s² as the paper writes it). ``objective="elbo"`` is the paper's eq. 3 instead, an ablation:
``− mean_n Σ_k γ_nk [log α_k − log γ_nk + log 𝒩(x_n; μ_k, Σ_k)]``.

Full covariances go through a Cholesky factorisation with a jitter that grows until it succeeds, and every division
and logarithm is guarded, so a component with (almost) no mass gives a finite loss and finite gradients. The μ-shift of
the paper's eq. 8 is left out: it is divided by N_k and is of order 1e-8 (see the project's research notes).
"""

from __future__ import annotations

import math

import torch
from torch.nn.modules.loss import _Loss

from labelfree.core.gaussian_mixture import gaussian_log_densities, gmm_parameters

__all__ = ["DCGNLoss", "gmm_parameters"]


class DCGNLoss(_Loss):
    """Deep constrained Gaussian network loss.

    Args:
        lam: weight λ of the centralised constraint (official code 0.05 with ``normaliser="std"``).
        normaliser: ``"std"`` (code) or ``"variance"`` (paper) for the constraint.
        objective: ``"marginal"`` (the official code's marginal log-likelihood) or ``"elbo"`` (paper eq. 3).
        component_eps: added to every component density inside the log, as the official code does (1e-5).
        jitter: initial diagonal jitter of the covariances (grown ×10 on failure).
        tissue_threshold: ``None`` (the paper and code: every pixel is a sample of the mixture) or a level in the
            normalised image above which a pixel whose channel mean exceeds it is empty glass, left out of the mixture
            and of the batch statistics. With K = 2 the mixture then splits the tissue (nuclei vs the rest) instead
            of tissue vs glass. If fewer than ``min_pixels`` pixels remain, all pixels are used.
        min_pixels: see ``tissue_threshold``.

    ``forward(logits, image)``: ``logits`` ``(B, K, H, W)`` network output (the softmax is taken here), ``image``
    ``(B, C, H, W)`` the normalised image the mixture models. All pixels of the batch form one mixture.
    """

    def __init__(
        self,
        lam: float = 0.05,
        normaliser: str = "std",
        objective: str = "marginal",
        component_eps: float = 1e-5,
        jitter: float = 1e-6,
        tissue_threshold: float | None = None,
        min_pixels: int = 64,
    ):
        super().__init__()
        if normaliser not in ("std", "variance"):
            raise ValueError(f"normaliser must be 'std' or 'variance', got {normaliser!r}")
        if objective not in ("marginal", "elbo"):
            raise ValueError(f"objective must be 'marginal' or 'elbo', got {objective!r}")
        self.lam, self.normaliser, self.objective = lam, normaliser, objective
        self.component_eps, self.jitter = component_eps, jitter
        self.tissue_threshold, self.min_pixels = tissue_threshold, min_pixels

    def log_densities(self, x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``(N, K)`` log 𝒩(x_n; μ_k, Σ_k)."""
        return gaussian_log_densities(x, mu, sigma, self.jitter)

    def forward(self, logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if (
            logits.ndim != 4
            or image.ndim != 4
            or logits.shape[0] != image.shape[0]
            or logits.shape[2:] != image.shape[2:]
        ):
            raise ValueError(
                f"expected (B, K, H, W) logits and (B, C, H, W) image, got {tuple(logits.shape)}, {tuple(image.shape)}"
            )
        k, c = logits.shape[1], image.shape[1]
        gamma = torch.softmax(logits.float(), dim=1).permute(0, 2, 3, 1).reshape(-1, k)
        x = image.detach().float().permute(0, 2, 3, 1).reshape(-1, c)
        if self.tissue_threshold is not None:
            keep = x.mean(dim=1) < self.tissue_threshold
            if int(keep.sum()) >= self.min_pixels:
                gamma, x = gamma[keep], x[keep]
        alpha, mu, sigma = gmm_parameters(x, gamma)
        logp = self.log_densities(x, mu, sigma)
        log_alpha = torch.log(alpha.clamp_min(1e-12))
        if self.objective == "marginal":
            joint = logp + log_alpha[None]
            if self.component_eps > 0:
                eps = torch.full_like(joint[:, :1], math.log(k * self.component_eps))
                joint = torch.cat([joint, eps], dim=1)  # Σ_k (p_nk + ε) = Σ_k p_nk + Kε
            nll = -torch.logsumexp(joint, dim=1).mean()
        else:
            log_gamma = torch.log(gamma.clamp_min(1e-12))
            nll = -(gamma * (log_alpha[None] - log_gamma + logp)).sum(dim=1).mean()
        mean = x.mean(dim=0)
        scale = x.std(dim=0, unbiased=False).clamp_min(1e-6)
        if self.normaliser == "variance":
            scale = scale**2
        penalty = ((mu - mean[None]).abs() / scale[None]).sum()
        return nll + self.lam * penalty
