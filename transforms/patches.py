"""Patch sampling and data purification by the Unsupervised Shape Measure Index (SSimNet, Algorithm 1).

Patches lie on an overlapping grid: ``n_per_axis`` positions per axis from 0 to ``size − patch`` (for a 1000×1000
tile, 256-pixel patches, 4 per axis: stride 248, 16 patches). The USMI of a patch's hard pseudo label is
``U = H̄ / Ā`` with H̄ the mean convex-hull area of all its components and Ā the mean area of the components whose
area lies in the inter-quartile range [Q1, Q3]. Round, uniform nuclei give U close to 1; ragged or merged blobs give
larger U. The patches with the lowest U, a fraction ``alpha`` (70 %) of all, are kept; a patch with fewer than
``min_components`` components has U = +inf and is always dropped.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends
from skimage.measure import label, regionprops

__all__ = [
    "grid_patch_locations",
    "usmi",
    "select_patches",
    "USMIPatchSelection",
    "USMIPatchSelectiond",
    "USMIPatchSelectionD",
    "USMIPatchSelectionDict",
]


def grid_patch_locations(shape: Sequence[int], patch_size: int = 256, n_per_axis: int = 4) -> list[tuple[int, int]]:
    """Top-left corners ``(y, x)`` of an overlapping ``n_per_axis × n_per_axis`` grid of square patches.

    Raises:
        ValueError: the image is smaller than one patch.
    """
    h, w = int(shape[0]), int(shape[1])
    if h < patch_size or w < patch_size:
        raise ValueError(f"image of {h}x{w} pixels is smaller than the {patch_size}x{patch_size} patch size")
    ys = np.unique(np.rint(np.linspace(0, h - patch_size, n_per_axis)).astype(int))
    xs = np.unique(np.rint(np.linspace(0, w - patch_size, n_per_axis)).astype(int))
    return [(int(y), int(x)) for y in ys for x in xs]


def usmi(mask: np.ndarray, min_components: int = 3) -> float:
    """Unsupervised Shape Measure Index of a binary mask (lower = more regular nuclei).

    Args:
        mask: ``(H, W)`` binary hard pseudo label (or an instance map; instances are taken as given).
        min_components: fewer components than this give ``inf``.

    Returns:
        ``H̄ / Ā`` (>= 1 for non-degenerate input), or ``inf``.
    """
    m = np.asarray(mask)
    inst = m if m.dtype.kind in "ui" and m.max() > 1 else label(m > 0, connectivity=2)
    props = regionprops(inst)
    if len(props) < min_components:
        return math.inf
    areas = np.array([p.area for p in props], dtype=np.float64)
    hulls = np.array([p.area_convex for p in props], dtype=np.float64)
    q1, q3 = np.percentile(areas, [25, 75])
    mid = areas[(areas >= q1) & (areas <= q3)]
    return float(hulls.mean() / mid.mean())


def select_patches(
    mask: np.ndarray, patch_size: int = 256, n_per_axis: int = 4, alpha: float = 0.7, min_components: int = 3
) -> list[tuple[int, int, float]]:
    """Grid patches of ``mask`` ranked by USMI, the lowest ``alpha`` fraction kept.

    Returns:
        ``[(y, x, usmi), ...]`` sorted by increasing USMI (ties by position); patches with U = inf never appear.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    m = np.squeeze(np.asarray(mask))
    locs = grid_patch_locations(m.shape, patch_size, n_per_axis)
    scored = [(y, x, usmi(m[y : y + patch_size, x : x + patch_size], min_components)) for y, x in locs]
    scored.sort(key=lambda t: (t[2], t[0], t[1]))
    keep = max(1, round(alpha * len(scored)))
    return [s for s in scored[:keep] if math.isfinite(s[2])]


class USMIPatchSelection(Transform):
    """Array transform: ``(1, H, W)`` hard pseudo label → kept patch corners and scores ``[(y, x, usmi), ...]``.

    Args:
        patch_size: square patch side.
        n_per_axis: grid positions per axis.
        alpha: fraction of the patches kept (lowest USMI first).
        min_components: patches with fewer components are dropped.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, patch_size: int = 256, n_per_axis: int = 4, alpha: float = 0.7, min_components: int = 3):
        self.patch_size, self.n_per_axis, self.alpha, self.min_components = (
            patch_size,
            n_per_axis,
            alpha,
            min_components,
        )

    def __call__(self, mask: np.ndarray | torch.Tensor) -> list[tuple[int, int, float]]:
        m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
        return select_patches(m, self.patch_size, self.n_per_axis, self.alpha, self.min_components)


class USMIPatchSelectiond(MapTransform):
    """Dictionary version: crops every key in ``keys`` (channel-first arrays) to each kept patch.

    Returns a list of dictionaries, one per kept patch (as MONAI's cropping-by-samples transforms do), each with the
    cropped keys, ``patch_location`` ``(y, x)`` and ``usmi``. Keys not in ``keys`` are copied unchanged.

    Args:
        keys: keys to crop (for example ``image``, the soft label and the Voronoi label).
        mask_key: the hard pseudo label the USMI is computed on.
    """

    backend = USMIPatchSelection.backend

    def __init__(self, keys: KeysCollection, mask_key: str, allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.selector = USMIPatchSelection(**kwargs)

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> list[dict[Hashable, np.ndarray]]:
        d = dict(data)
        size = self.selector.patch_size
        out = []
        for y, x, score in self.selector(d[self.mask_key]):
            patch = dict(d)
            for key in self.key_iterator(d):
                patch[key] = d[key][..., y : y + size, x : x + size]
            patch["patch_location"] = (y, x)
            patch["usmi"] = score
            out.append(patch)
        return out


USMIPatchSelectionD = USMIPatchSelectionDict = USMIPatchSelectiond
