"""Pale rims peeled off nuclei masks: each object's edge moved in to where its haematoxylin falls half-way to its
surroundings'.

A segmenter's mask can run a pixel or two beyond a nucleus, most on small nuclei and blurred tiles, where the
network's probability spreads past the stained edge (SSimNet's worst-area MoNuSeg tiles: objects 1.5–1.65× the area of
the true nuclei). The classic edge of a blob is its half-maximum: here, per object, half-way between the haematoxylin
inside it and in its own ring of background. Edge pixels paler than that are peeled, a layer at a time; nothing is ever
added, so a mask already inside its nucleus (its edge darker than the half level) stays as it is.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import TransformBackends, convert_to_dst_type
from scipy import ndimage as ndi

from labelfree.core.boundaries import inner_boundaries
from labelfree.core.centroids import present_labels
from labelfree.transforms.io import tensor_to_rgb
from labelfree.transforms.stain import tile_stain_concentrations

__all__ = ["peel_pale_rims", "PeelPaleRimsd"]


def _label_medians(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """``(n + 1,)`` median of ``values`` per label ``1..n`` (index 0 and labels without pixels: NaN)."""
    out = np.full(n + 1, np.nan)
    present = present_labels(labels)
    if present.size:
        out[present] = ndi.median(values, labels=labels, index=present)
    return out


def peel_pale_rims(
    inst: np.ndarray, haematoxylin: np.ndarray, width: int = 2, core_depth: int = 2, ring_width: int = 3
) -> np.ndarray:
    """Peel each object's edge pixels paler than half-way between its inside and its surroundings.

    Args:
        inst: ``(H, W)`` instance map, 0 = background.
        haematoxylin: ``(H, W)`` haematoxylin concentration (or any stain density, higher = more stain).
        width: layers peeled at most; 0 returns the map unchanged.
        core_depth: an object's inside level is the median over its pixels at least this many pixels (chessboard) from
            its edge (all its pixels when none is that deep).
        ring_width: its outside level is the median over the background pixels within this many pixels of it and
            nearer to it than to any other object.

    Returns:
        ``(H, W)`` int32 instance map with the same ids; no object loses more than half its pixels, and objects whose
        ring is not paler than their inside are unchanged.
    """
    inst = np.asarray(inst).astype(np.int32, copy=True)
    h = np.asarray(haematoxylin, dtype=np.float64)
    if inst.shape != h.shape:
        raise ValueError(f"the instance map {inst.shape} and the haematoxylin {h.shape} differ in shape")
    n = int(inst.max(initial=0))
    if width <= 0 or n == 0:
        return inst
    depth = ndi.distance_transform_cdt(~(inner_boundaries(inst) | (inst == 0)), metric="chessboard")
    inside = _label_medians(h, np.where(depth >= core_depth, inst, 0), n)
    inside = np.where(np.isnan(inside), _label_medians(h, inst, n), inside)
    dist, (iy, ix) = ndi.distance_transform_edt(inst == 0, return_indices=True)
    ring = np.where((inst == 0) & (dist <= ring_width), inst[iy, ix], 0)
    outside = _label_medians(h, ring, n)
    half = (inside + outside) / 2.0
    peelable = np.isfinite(half) & (outside < inside)
    half = np.where(peelable, half, -np.inf)  # an edge is never below -inf: those objects keep every pixel
    floor = np.bincount(inst.ravel(), minlength=n + 1) / 2.0
    for _ in range(int(width)):
        cand = inner_boundaries(inst) & (h < half[inst])
        if not cand.any():
            break
        left = np.bincount(inst.ravel(), minlength=n + 1) - np.bincount(inst[cand], minlength=n + 1)
        cand &= (left >= floor)[inst]  # a layer that would take an object below half its area is left in place
        inst[cand] = 0
    return inst


class PeelPaleRimsd(MapTransform):
    """Dictionary transform: :func:`peel_pale_rims` on instance maps, haematoxylin from the tile's own stains.

    Args:
        keys: ``(1, H, W)`` instance maps at the tile's size.
        image_key: the tile, ``(3, H, W)`` (uint8, or the [0, 1] network input; see ``tensor_to_rgb``).
        seg_key: the binary mask written beside the instances (``(1, H, W)`` uint8, 0/255), recomputed; ``None``: none.
        width: layers peeled at most; 0: off (the data are returned as they are).
        allow_missing_keys: as MONAI's.
    """

    # the maps are peeled in numpy and given back in the container they came in (tensor in, tensor out)
    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str = "tile",
        seg_key: str | None = "seg",
        width: int = 0,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.image_key, self.seg_key, self.width = image_key, seg_key, int(width)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        if self.width <= 0:
            return d
        haematoxylin = None
        for key in self.key_iterator(d):
            inst = torch.as_tensor(d[key]).detach().cpu().numpy() if isinstance(d[key], torch.Tensor) else d[key]
            plane = np.asarray(inst).reshape(np.shape(inst)[-2:])
            if plane.max(initial=0) == 0:
                continue
            if haematoxylin is None:
                haematoxylin = tile_stain_concentrations(tensor_to_rgb(d[self.image_key]))[0][0]
            peeled = peel_pale_rims(plane, haematoxylin, self.width)
            d[key] = convert_to_dst_type(peeled.reshape(np.shape(inst)), dst=d[key])[0]
            if self.seg_key is not None and self.seg_key in d:
                d[self.seg_key] = convert_to_dst_type(((peeled > 0) * 255).astype(np.uint8)[None], dst=d[self.seg_key])[
                    0
                ]
        return d
