"""Fuzzy c-means in torch, and the nuclei candidate mask SSimNet draws from the haematoxylin-only image."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends
from skimage.color import rgb2lab

from labelfree.core.imageio import as_rgb_uint8
from labelfree.core.palette import colour_palette

#: default number of clusters of a single FCM run: nuclei, cytoplasm/stroma and background (the DCGN paper's
#: "redundant class"); the pseudo labels choose 2 or 3 per tile (``labelfree.transforms.pseudolabel`` explains why)
N_CLUSTERS = 3

__all__ = [
    "N_CLUSTERS",
    "cielab_palette",
    "fuzzy_cmeans",
    "fcm_memberships",
    "FuzzyCMeansNuclei",
    "FuzzyCMeansNucleid",
    "FuzzyCMeansNucleiD",
    "FuzzyCMeansNucleiDict",
]


def fcm_memberships(x: torch.Tensor, centers: torch.Tensor, m: float = 2.0) -> torch.Tensor:
    """Fuzzy memberships ``u_nk = 1 / Σ_j (d_nk / d_nj)^(2/(m-1))``.

    Args:
        x: ``(N, D)`` samples.
        centers: ``(C, D)`` cluster centres.
        m: fuzzifier (> 1).

    Returns:
        ``(N, C)`` memberships, rows summing to 1.
    """
    d2 = torch.cdist(x, centers).pow(2).clamp_min(1e-12)
    # u_nk ∝ d2_nk^(-1/(m-1)); normalised in log space so far-away points do not underflow
    logits = -torch.log(d2) / (m - 1.0)
    return torch.softmax(logits, dim=1)


def fuzzy_cmeans(
    x: torch.Tensor,
    n_clusters: int = N_CLUSTERS,
    m: float = 2.0,
    max_iter: int = 100,
    tol: float = 1e-5,
    seed: int = 0,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fuzzy c-means (Bezdek) on ``x``.

    Args:
        x: ``(N, D)`` float samples.
        n_clusters: number of clusters C.
        m: fuzzifier (> 1); 2 is the usual choice.
        max_iter: iterations at most.
        tol: stop once no centre moves more than this.
        seed: seed of the random initial memberships (the result is deterministic for a given seed).
        weights: ``(N,)`` how many times each sample counts (distinct colours and their pixel counts fit the same
            centres as the pixels themselves); default 1 each.

    Returns:
        ``(centers (C, D), memberships (N, C))``.
    """
    if m <= 1.0:
        raise ValueError(f"the fuzzifier m must be > 1, got {m}")
    if x.ndim != 2 or x.shape[0] < n_clusters:
        raise ValueError(f"need an (N, D) sample with N >= {n_clusters}, got {tuple(x.shape)}")
    x = x.float()
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(x.shape[0], n_clusters, generator=gen).to(x.device)
    u = u / u.sum(dim=1, keepdim=True)
    centers = torch.zeros(n_clusters, x.shape[1], device=x.device)
    counts = None if weights is None else weights.float().reshape(-1, 1).to(x.device)
    for _ in range(max_iter):
        w = u.pow(m) if counts is None else u.pow(m) * counts
        new_centers = (w.T @ x) / w.sum(dim=0).clamp_min(1e-12)[:, None]
        u = fcm_memberships(x, new_centers, m)
        shift = (new_centers - centers).abs().max()
        centers = new_centers
        if shift < tol:
            break
    return centers, u


def cielab_palette(rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct colours of a uint8 RGB image in CIELAB, and which one each pixel has.

    A haematoxylin-only image is one stain at varying strength: its million pixels hold a few hundred distinct 8-bit
    colours. Converting and clustering those instead of every pixel gives the same per-pixel values (both are
    functions of the colour alone) at a fraction of the cost.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB.

    Returns:
        ``(U, 3)`` float32 CIELAB colours and ``(H·W,)`` int64 indices into them, in row-major pixel order.
    """
    colours, inverse = colour_palette(rgb)
    lab = rgb2lab(colours[None]).reshape(-1, 3).astype(np.float32)
    return torch.from_numpy(lab), torch.from_numpy(inverse)


class FuzzyCMeansNuclei(Transform):
    """Candidate nuclei mask: fuzzy c-means on CIELAB of a haematoxylin-only RGB image.

    The clusters are fitted on a seeded pixel subsample and every pixel is then assigned to its highest membership;
    nuclei = the cluster whose centre has the lowest L* (darkest haematoxylin), so no label is needed.

    Args:
        n_clusters: clusters (2 in SSimNet).
        m: fuzzifier.
        max_pixels: subsample size for fitting.
        seed: subsample and initialisation seed.

    Returns (from ``__call__``):
        ``(mask (1, H, W) bool, nuclei membership (1, H, W) float32, L* (1, H, W) float32)``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, n_clusters: int = N_CLUSTERS, m: float = 2.0, max_pixels: int = 20000, seed: int = 0):
        self.n_clusters, self.m, self.max_pixels, self.seed = n_clusters, m, max_pixels, seed

    def __call__(
        self, hema_rgb: np.ndarray | torch.Tensor, palette: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Args:
            hema_rgb: ``(3, H, W)`` haematoxylin-only RGB image.
            palette: its colours in CIELAB and each pixel's colour, when already computed (:func:`cielab_palette`):
                several clusterings of one image then convert it once.
        """
        rgb = as_rgb_uint8(hema_rgb, channel_first=True, name="haematoxylin image")
        h, w = rgb.shape[:2]
        lab, inverse = cielab_palette(rgb) if palette is None else palette
        n = inverse.shape[0]
        idx = np.random.default_rng(self.seed).choice(n, min(self.max_pixels, n), replace=False)
        # the sample's distinct colours, each counted as often as it was drawn: the same fit on a few hundred rows
        colours, counts = torch.unique(inverse[idx], return_counts=True)
        centers, _ = fuzzy_cmeans(lab[colours], self.n_clusters, self.m, seed=self.seed, weights=counts)
        nuclei = int(centers[:, 0].argmin())
        # memberships are a function of the colour: computed once per distinct colour, then spread to the pixels
        u = fcm_memberships(lab, centers, self.m)
        mask = (u.argmax(dim=1) == nuclei)[inverse].reshape(1, h, w).numpy()
        membership = u[:, nuclei][inverse].reshape(1, h, w).numpy()
        return mask, membership, lab[:, 0][inverse].reshape(1, h, w).numpy()


class FuzzyCMeansNucleid(MapTransform):
    """Dictionary twin of :class:`FuzzyCMeansNuclei`: reads ``keys`` (haematoxylin RGB), writes ``mask_key``,
    ``{mask_key}_membership`` and ``{mask_key}_lightness``."""

    backend = FuzzyCMeansNuclei.backend

    def __init__(self, keys: KeysCollection, mask_key: str = "fcm_mask", allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.fcm = FuzzyCMeansNuclei(**kwargs)

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        d = dict(data)
        for key in self.key_iterator(d):
            mask, memb, light = self.fcm(d[key])
            d[self.mask_key], d[f"{self.mask_key}_membership"], d[f"{self.mask_key}_lightness"] = mask, memb, light
        return d


FuzzyCMeansNucleiD = FuzzyCMeansNucleiDict = FuzzyCMeansNucleid
