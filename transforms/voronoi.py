"""Voronoi tri-labels from nuclei centres (Qu et al., MICCAI 2019; used by SSimNet).

Each nucleus centre, dilated by a disk, is labelled 1 (nucleus); the edges of the Voronoi partition of the centres
are labelled 0 (background: the boundary between two neighbouring nuclei is almost surely not nucleus); everything
else is 2 (ignored by the loss). The partition is the nearest-centre map of a Euclidean distance transform, which is
the Voronoi diagram on the pixel grid and needs no special case for 0, 1, 2 or collinear points.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type
from scipy import ndimage as ndi
from skimage.morphology import disk
from skimage.segmentation import find_boundaries

from labelfree.core.boundaries import thick_boundaries
from labelfree.core.centroids import instance_centroids, present_labels
from labelfree.core.distance import distance_to_background

__all__ = [
    "IGNORE_INDEX",
    "component_centres",
    "voronoi_trilabel",
    "VoronoiTriLabel",
    "VoronoiTriLabeld",
    "VoronoiTriLabelD",
    "VoronoiTriLabelDict",
]

IGNORE_INDEX = 2


def component_centres(mask: np.ndarray) -> np.ndarray:
    """Centre pixel ``(y, x)`` of every component (8-connected) or instance.

    The rounded centroid, or, when it falls outside a non-convex component, the component's pixel farthest from its
    border (which is always inside).

    Returns:
        ``(n, 2)`` int array.
    """
    m = np.asarray(mask)
    inst = (
        m.astype(np.int64) if m.dtype.kind in "ui" and m.max() > 1 else ndi.label(m > 0, structure=np.ones((3, 3)))[0]
    )
    ids = present_labels(inst)
    if ids.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    cents = np.rint(instance_centroids(inst, ids)).astype(np.int64).reshape(-1, 2)
    inside = inst[cents[:, 0], cents[:, 1]] == ids
    if not inside.all():
        depth = distance_to_background(inst > 0)
        # per instance, argmax of the depth: the pixel farthest from the border
        for j in np.flatnonzero(~inside):
            ys, xs = np.nonzero(inst == ids[j])
            k = depth[ys, xs].argmax()
            cents[j] = (ys[k], xs[k])
    return cents


def voronoi_trilabel(
    mask: np.ndarray, point_radius: int = 2, edge_mode: str = "thick", ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Voronoi tri-label of a binary mask or instance map.

    Args:
        mask: ``(H, W)`` binary mask (8-connected components are nuclei) or instance map.
        point_radius: radius of the disk drawn at each centre (label 1).
        edge_mode: ``skimage.segmentation.find_boundaries`` mode of the Voronoi edges (``"thick"``: 2 px).
        ignore_index: value of the unlabelled pixels.

    Returns:
        ``(H, W)`` uint8 with values 1 (nucleus), 0 (Voronoi edge) and ``ignore_index``.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"expected a 2D mask, got shape {m.shape}")
    out = np.full(m.shape, ignore_index, dtype=np.uint8)
    cents = component_centres(m)
    if len(cents) == 0:
        return out
    seeds = np.zeros(m.shape, dtype=np.int64)
    seeds[cents[:, 0], cents[:, 1]] = np.arange(1, len(cents) + 1)
    if len(cents) > 1:
        _, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
        cells = seeds[iy, ix]
        edges = thick_boundaries(cells) if edge_mode == "thick" else find_boundaries(cells, mode=edge_mode)
        out[edges] = 0
    # a disk around every centre, clipped to the image: the dilation of the centres by the (symmetric) disk
    dy, dx = (np.argwhere(disk(point_radius)) - point_radius).T
    ys, xs = (cents[:, :1] + dy).ravel(), (cents[:, 1:] + dx).ravel()
    keep = (ys >= 0) & (ys < m.shape[0]) & (xs >= 0) & (xs < m.shape[1])
    out[ys[keep], xs[keep]] = 1
    return out


class VoronoiTriLabel(Transform):
    """Array transform ``(1, H, W)`` mask → ``(1, H, W)`` uint8 tri-label; see :func:`voronoi_trilabel`."""

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, point_radius: int = 2, edge_mode: str = "thick", ignore_index: int = IGNORE_INDEX):
        self.point_radius, self.edge_mode, self.ignore_index = point_radius, edge_mode, ignore_index

    def __call__(self, mask: np.ndarray | torch.Tensor) -> np.ndarray:
        m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
        if m.ndim != 3 or m.shape[0] != 1:
            raise ValueError(f"expected a (1, H, W) mask, got shape {m.shape}")
        out = voronoi_trilabel(m[0], self.point_radius, self.edge_mode, self.ignore_index)[None]
        return convert_to_dst_type(out, dst=mask, dtype=out.dtype)[0]  # tensor in, tensor out


class VoronoiTriLabeld(MapTransform):
    """Dictionary twin of :class:`VoronoiTriLabel`: writes ``output_key`` (default ``{key}_voronoi``)."""

    backend = VoronoiTriLabel.backend

    def __init__(self, keys: KeysCollection, output_key: str | None = None, allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.op = VoronoiTriLabel(**kwargs)

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key or f"{key}_voronoi"] = self.op(d[key])
        return d


VoronoiTriLabelD = VoronoiTriLabelDict = VoronoiTriLabeld
