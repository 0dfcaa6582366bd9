"""Label softening by iterative erosion (SSimNet eq. 4).

For each connected component of area A, erode repeatedly with a 3×3 square; the ring peeled off at erosion k, where
``S_k`` is what remained before that erosion, gets ``1 − |S_k| / (2A)``: the outer ring 0.5, values rising towards 1
in the middle. Peeling stops once the value exceeds ``stop`` (0.975): the remaining core takes that value. Background
is 0.

Erosion depth with a 3×3 square equals the chessboard distance to the background, so every component is softened
at once from one distance transform and a per-component histogram, instead of one erosion loop per nucleus.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type
from scipy import ndimage as ndi

__all__ = [
    "soften_mask",
    "soften_instances",
    "contact_lines",
    "SoftenLabel",
    "SoftenLabeld",
    "SoftenLabelD",
    "SoftenLabelDict",
]


def soften_mask(mask: np.ndarray, stop: float = 0.975) -> np.ndarray:
    """Soft label of a binary mask.

    Args:
        mask: ``(H, W)`` binary mask (the hard pseudo label).
        stop: peeling stops once a ring value exceeds this.

    Returns:
        ``(H, W)`` float32 in {0} ∪ [0.5, 1].
    """
    fg = np.asarray(mask).astype(bool)
    if fg.ndim != 2:
        raise ValueError(f"expected a 2D mask, got shape {fg.shape}")
    out = np.zeros(fg.shape, dtype=np.float32)
    if not fg.any():
        return out
    # 8-connected components are never 8-adjacent, so the chessboard distance of the union is that of each component
    labels, n = ndi.label(fg, structure=np.ones((3, 3)))
    depth = ndi.distance_transform_cdt(np.pad(fg, 1), metric="chessboard")[1:-1, 1:-1]
    max_depth = int(depth.max())
    # hist[c, d] = pixels of component c at depth d
    which, level = labels[fg].astype(np.int64), depth[fg]
    hist = np.bincount(which * (max_depth + 2) + level, minlength=(n + 1) * (max_depth + 2)).reshape(n + 1, -1)
    remaining = hist[:, ::-1].cumsum(axis=1)[:, ::-1]  # remaining[c, d] = |S_{d-1}| = pixels at depth >= d
    area = np.maximum(remaining[:, 1:2], 1)
    value = 1.0 - remaining[:, 1:] / (2.0 * area)  # value[c, k] for the ring peeled at erosion k (depth k + 1)
    # from the first ring above `stop` on, every deeper pixel takes that ring's value
    above = value > stop
    first = np.where(above.any(axis=1), above.argmax(axis=1), value.shape[1] - 1)
    k = np.minimum(level - 1, first[which])
    out[fg] = value[which, k]
    return out


def contact_lines(inst: np.ndarray, width: int = 1) -> np.ndarray:
    """``(H, W)`` bool: the nucleus pixels with a pixel of another nucleus within ``width`` (chessboard distance).
    Background neighbours do not count: that is a nucleus's own rim, not a line between two nuclei.

    Args:
        inst: ``(H, W)`` instance map, 0 = background.
        width: how far from the other nucleus a pixel still belongs to the line; 1: the pixels next to it (a line two
            pixels wide between two touching nuclei), 2: a band four pixels wide (and two nuclei a pixel apart get
            a band too).
    """
    if int(width) != width or width < 1:
        raise ValueError(f"the contact line width must be a positive whole number of pixels, got {width}")
    size = 2 * int(width) + 1
    lab = np.asarray(inst)
    # the filters' running min and max are cheaper on 32-bit labels; the ids (and max + 1 below) must fit
    lab = lab.astype(np.int32 if lab.size == 0 or int(lab.max()) < np.iinfo(np.int32).max else np.int64)
    fg = lab > 0
    larger = ndi.maximum_filter(lab, size=size) > lab
    smaller = ndi.minimum_filter(np.where(fg, lab, lab.max() + 1), size=size) < lab
    return fg & (larger | smaller)


def soften_instances(
    inst: np.ndarray, stop: float = 0.975, contact_value: float = 0.5, contact_width: int = 1
) -> np.ndarray:
    """Soft label of an instance map: every nucleus softened on its own.

    Where two nuclei touch, :func:`soften_mask` would see one component and give the contact line a deep, confident
    value; here the pixels on the border between two instances take ``contact_value``: by default the rim value 0.5,
    as if each nucleus were alone, so a network trained on it learns a dip between touching nuclei; 0 makes the
    contact line background, a gap between them (as the original U-Net separated touching cells).

    Args:
        inst: ``(H, W)`` instance map, 0 = background.
        stop: as in :func:`soften_mask`.
        contact_value: the target of the pixels on a border between two instances, in [0, 1].
        contact_width: the border's half-width in pixels (:func:`contact_lines`).

    Returns:
        ``(H, W)`` float32 in {0} ∪ [0.5, 1] (and ``contact_value`` on contact lines).
    """
    if not 0.0 <= contact_value <= 1.0:
        raise ValueError(f"contact_value must be in [0, 1], got {contact_value}")
    lab = np.asarray(inst)
    if lab.ndim != 2:
        raise ValueError(f"expected a 2D instance map, got shape {lab.shape}")
    fg = lab > 0
    contact = contact_lines(lab, contact_width)
    out = soften_mask(fg & ~contact, stop)
    out[contact] = contact_value
    return out


class SoftenLabel(Transform):
    """Array transform ``(1, H, W)`` binary mask → ``(1, H, W)`` float32 soft label; see :func:`soften_mask`."""

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, stop: float = 0.975):
        self.stop = stop

    def __call__(self, mask: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """``(1, H, W)`` mask → ``(1, H, W)`` float32 soft label, of the input's type (tensor in, tensor out)."""
        m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
        if m.ndim != 3 or m.shape[0] != 1:
            raise ValueError(f"expected a (1, H, W) mask, got shape {m.shape}")
        out = soften_mask(m[0], self.stop)[None]
        return convert_to_dst_type(out, dst=mask, dtype=out.dtype)[0]


class SoftenLabeld(MapTransform):
    """Dictionary twin of :class:`SoftenLabel`: writes ``output_key`` (default ``{key}_soft``)."""

    backend = SoftenLabel.backend

    def __init__(
        self, keys: KeysCollection, output_key: str | None = None, stop: float = 0.975, allow_missing_keys: bool = False
    ):
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.op = SoftenLabel(stop)

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key or f"{key}_soft"] = self.op(d[key])
        return d


SoftenLabelD = SoftenLabelDict = SoftenLabeld
