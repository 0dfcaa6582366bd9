"""A Gaussian mixture read off responsibilities: closed-form parameters, log densities and the Bayes posterior.

DCGN reads its network's softmax γ as the E-step posterior of a mixture over per-pixel features: the M-step is then
closed form (``N_k = Σ γ_nk``, ``α_k = N_k / N``, ``μ_k = Σ γ_nk x_n / N_k``, ``Σ_k = Σ γ_nk (x_n − μ_k)(x_n − μ_k)ᵀ /
N_k``). Training differentiates through it (the bundle's loss); at inference :func:`mixture_posterior` completes the
EM step on the tile in hand: the posterior ``p(k | x_n) ∝ α_k 𝒩(x_n; μ_k, Σ_k)`` of the mixture the network's softmax
defines on that tile's own pixels.
"""

from __future__ import annotations

import math

import torch

__all__ = ["gmm_parameters", "stable_cholesky", "gaussian_log_densities", "mixture_posterior"]


def gmm_parameters(
    x: torch.Tensor, gamma: torch.Tensor, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed-form mixture weights, means and covariances from responsibilities (pixels as rows, as the loss's
    batches come; differentiable in ``gamma``).

    Args:
        x: ``(N, C)`` pixels.
        gamma: ``(N, K)`` responsibilities (rows sum to 1).
        eps: floor of ``N_k`` in the divisions, so an empty component gives finite parameters.

    Returns:
        ``alpha (K,)``, ``mu (K, C)``, ``sigma (K, C, C)``.
    """
    nk = gamma.sum(dim=0)
    nk_safe = nk.clamp_min(eps)
    alpha = nk / x.shape[0]
    mu = (gamma.T @ x) / nk_safe[:, None]
    diff = x[:, None, :] - mu[None]  # (N, K, C)
    sigma = torch.einsum("nk,nkc,nkd->kcd", gamma, diff, diff) / nk_safe[:, None, None]
    return alpha, mu, sigma


def stable_cholesky(sigma: torch.Tensor, jitter: float, tries: int = 6) -> torch.Tensor:
    """Cholesky factors of ``(K, C, C)`` covariances, with a diagonal jitter grown ×10 until every one succeeds.

    Raises:
        RuntimeError: a covariance is not positive definite even with the largest jitter.
    """
    eye = torch.eye(sigma.shape[-1], dtype=sigma.dtype, device=sigma.device)
    j = jitter
    for _ in range(tries):
        chol, info = torch.linalg.cholesky_ex(sigma + j * eye)
        if not bool((info > 0).any()):
            return chol
        j *= 10.0
    raise RuntimeError(f"covariance not positive definite even with jitter {j:g}")


def gaussian_log_densities(
    x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, jitter: float = 1e-6
) -> torch.Tensor:
    """``(N, K)`` log 𝒩(x_n; μ_k, Σ_k) for ``x (N, C)``, ``mu (K, C)``, ``sigma (K, C, C)``."""
    chol = stable_cholesky(sigma, jitter)
    diff = (x[:, None, :] - mu[None]).permute(1, 2, 0)  # (K, C, N)
    z = torch.linalg.solve_triangular(chol, diff, upper=False)
    maha = z.pow(2).sum(dim=1).T  # (N, K)
    logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (x.shape[1] * math.log(2 * math.pi) + logdet[None] + maha)


def mixture_posterior(x: torch.Tensor, gamma: torch.Tensor, jitter: float = 1e-6, eps: float = 1e-8) -> torch.Tensor:
    """One EM step from ``gamma``: the posterior of the mixture whose parameters ``gamma`` defines on ``x``.

    The same mixture as :func:`gmm_parameters` and :func:`gaussian_log_densities` give, computed from the moments
    ``Σ_n γ_kn [x_cn x_dn, x_cn, 1]`` so that a whole tile (millions of pixels) never makes a ``K × C × N`` tensor: the
    Mahalanobis terms are one ``(K, P) @ (P, N)`` product over the same per-pixel monomials. Channel-first, as the
    images are (``features.reshape(C, -1)``). Use float64 ``x``: the covariances are second moments minus squared means.

    Args:
        x: ``(C, N)`` features of one image's pixels.
        gamma: ``(K, N)`` responsibilities of the same pixels (e.g. a network's softmax).
        jitter: initial diagonal jitter of the covariances (see :func:`stable_cholesky`).
        eps: floor of ``N_k`` in the divisions.

    Returns:
        ``(K, N)`` posterior ``α_k 𝒩(x_n; μ_k, Σ_k) / Σ_j α_j 𝒩(x_n; μ_j, Σ_j)``, summing to 1 over K. A component
        without mass (``N_k = 0``) gets posterior 0 everywhere.
    """
    c, n = x.shape
    rows, cols = torch.triu_indices(c, c, device=x.device)
    p = len(rows)
    # per-pixel monomials as rows: x_c x_d (c <= d), x_c, 1
    design = torch.cat([x[rows] * x[cols], x, torch.ones(1, n, dtype=x.dtype, device=x.device)], dim=0)
    moments = gamma.to(x.dtype) @ design.T  # (K, P + C + 1)
    nk = moments[:, -1]
    nk_safe = nk.clamp_min(eps)
    mu = moments[:, p : p + c] / nk_safe[:, None]
    second = torch.zeros(len(nk), c, c, dtype=x.dtype, device=x.device)
    second[:, rows, cols] = moments[:, :p] / nk_safe[:, None]
    second[:, cols, rows] = moments[:, :p] / nk_safe[:, None]
    sigma = second - mu[:, :, None] * mu[:, None, :]
    chol = stable_cholesky(sigma, jitter)
    precision = torch.cholesky_inverse(chol)  # (K, C, C)
    # -1/2 (x - mu)^T P (x - mu) = -1/2 [sum_{c<=d} (2 - [c = d]) P_cd x_c x_d] + (P mu)^T x - 1/2 mu^T P mu
    off_diagonal = (rows != cols).to(x.dtype)
    w_quad = -0.5 * precision[:, rows, cols] * (1.0 + off_diagonal)[None]
    p_mu = (precision @ mu[:, :, None])[:, :, 0]
    logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    w_const = -0.5 * (p_mu * mu).sum(1) - 0.5 * (c * math.log(2 * math.pi) + logdet) + torch.log(nk / n)
    joint = torch.cat([w_quad, p_mu, w_const[:, None]], dim=1) @ design  # (K, N); log 0 = -inf: an empty component
    # the softmax over K written out: K rows of N contiguous values (torch.softmax over a short dim is slower)
    joint -= joint.max(dim=0, keepdim=True).values
    joint.exp_()
    return joint.div_(joint.sum(dim=0, keepdim=True))
