"""Where a tile's segmentation errors lie: at nucleus borders, in whole missed or extra objects, or in the splitting.

Labels are read only to analyse a finished run; nothing here feeds back into a method.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from labelfree.core.metrics import aji
from labelfree.transforms.instances import instances_from_map

__all__ = [
    "ERROR_COLUMNS",
    "drop_off_nucleus_objects",
    "edge_offset",
    "flood_from_markers",
    "fp_in_false_objects",
    "join_fragments_by_labels",
    "merged_fraction",
    "split_by_true_markers",
    "split_merges_by_labels",
    "tile_errors",
]

ERROR_COLUMNS = (
    "area_ratio",
    "fp_fraction",
    "fp_at_border",
    "fn_fraction",
    "fn_at_border",
    "aji",
    "aji_true_foreground",
    "merged_fraction",
    "aji_true_markers",
    "edge_offset",
    "fp_in_false_objects",
    "aji_merges_split",
    "aji_fragments_joined",
    "aji_off_nucleus_dropped",
)

#: a predicted object holding at least this share of each of two or more labelled nuclei is a merge
MERGE_SHARE = 0.3
#: predicted objects lying by at least this share of their area in one labelled nucleus, two or more of them, are its
#: fragments
FRAGMENT_SHARE = 0.5
#: a predicted object with less than this share of its area on labelled nuclei is off every nucleus
OFF_NUCLEUS_SHARE = 0.2


def _pair_counts(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(inter, gt_area, pred_area)``: pixel counts of every (labelled nucleus, predicted object) pair, ids from 1."""
    g, p = np.asarray(gt).astype(np.int64), np.asarray(pred).astype(np.int64)
    ng, npr = int(g.max()) + 1, int(p.max()) + 1
    both = (g > 0) & (p > 0)
    inter = np.bincount(g[both] * npr + p[both], minlength=ng * npr).reshape(ng, npr)[1:, 1:]
    return inter, np.bincount(g.ravel(), minlength=ng)[1:], np.bincount(p.ravel(), minlength=npr)[1:]


def edge_offset(gt: np.ndarray, pred: np.ndarray) -> float:
    """Where the predicted outlines sit against the labelled ones, in pixels: over the nucleus / object pairs that
    match (IoU > 0.5, so one to one), the summed area difference (predicted − labelled) divided by the summed
    labelled outline length. Positive: the masks reach beyond the labels' outlines; 0 when nothing matches. Two
    data sets whose labels draw the edge in different places show it here, whatever the method."""
    g = np.asarray(gt).astype(np.int64)
    if g.max() < 1 or np.asarray(pred).max() < 1:
        return 0.0
    inter, ga, pa = _pair_counts(gt, pred)
    iou = inter / np.maximum(ga[:, None] + pa[None, :] - inter, 1)
    gi, pi = np.nonzero(iou > 0.5)
    if not gi.size:
        return 0.0
    outline = g * (g != ndi.grey_erosion(g, size=3))  # labelled pixels with another label (or none) beside them
    perimeter = np.bincount(outline.ravel(), minlength=len(ga) + 1)[1:]
    return float((pa[pi] - ga[gi]).sum() / max(perimeter[gi].sum(), 1))


def fp_in_false_objects(gt: np.ndarray, pred: np.ndarray) -> float:
    """Share of the false nucleus pixels that lie in predicted objects mostly (more than half) outside every labelled
    nucleus: extra objects rather than outlines drawn too wide."""
    g, p = np.asarray(gt) > 0, np.asarray(pred).astype(np.int64)
    fp = (p > 0) & ~g
    if not fp.any():
        return 0.0
    area = np.bincount(p.ravel())
    inside = np.bincount(p[g], minlength=len(area))
    false_object = inside * 2 < area
    false_object[0] = False
    return float(false_object[p[fp]].mean())


def merged_fraction(gt: np.ndarray, pred: np.ndarray) -> float:
    """Share of labelled nuclei lying, by at least half, in a predicted object that holds half of another one too:
    the nuclei lost to under-splitting."""
    if np.asarray(gt).max() < 1 or np.asarray(pred).max() < 1:
        return 0.0
    inter, area, _ = _pair_counts(gt, pred)
    mostly = inter >= 0.5 * np.maximum(area, 1)[:, None]  # [nucleus, object]: the object holds half the nucleus
    shared = mostly & (mostly.sum(axis=0) >= 2)[None, :]
    present = area > 0
    return float(shared.any(axis=1)[present].mean()) if present.any() else 0.0


def split_merges_by_labels(gt: np.ndarray, pred: np.ndarray, share: float = MERGE_SHARE) -> np.ndarray:
    """The prediction with every merge split as the labels split it: a predicted object holding at least ``share`` of
    each of two or more labelled nuclei gives each of its pixels to the nearest of those nuclei (its pixels on one of
    them to that one). Only the merges change; what AJI gains is the part of its gap owed to under-splitting."""
    g, p = np.asarray(gt).astype(np.int64), np.asarray(pred).astype(np.int64)
    out = p.copy()
    if g.max() < 1 or p.max() < 1:
        return out
    inter, area, _ = _pair_counts(g, p)
    holds = inter >= share * np.maximum(area, 1)[:, None]  # [nucleus, object]
    next_id = int(p.max()) + 1
    boxes = ndi.find_objects(p)
    for obj in np.flatnonzero(holds.sum(axis=0) >= 2):
        nuclei = np.flatnonzero(holds[:, obj]) + 1
        box = boxes[obj]
        mine = p[box] == obj + 1
        theirs = np.where(np.isin(g[box], nuclei), g[box], 0)
        # nearest labelled pixel of those nuclei, for every pixel of the object's box
        _, (iy, ix) = ndi.distance_transform_edt(theirs == 0, return_indices=True)
        nearest = theirs[iy, ix]
        crop = out[box]
        for k, nucleus in enumerate(nuclei.tolist()):
            if k:  # the first nucleus keeps the object's id
                crop[mine & (nearest == nucleus)] = next_id
                next_id += 1
    return out


def join_fragments_by_labels(gt: np.ndarray, pred: np.ndarray, share: float = FRAGMENT_SHARE) -> np.ndarray:
    """The prediction with every nucleus's fragments joined: predicted objects lying by at least ``share`` of their
    area in one labelled nucleus, two or more for one nucleus, become one object (their pixels unchanged)."""
    g, p = np.asarray(gt).astype(np.int64), np.asarray(pred).astype(np.int64)
    if g.max() < 1 or p.max() < 1:
        return p
    inter, _, parea = _pair_counts(g, p)
    home = np.full(parea.size, -1)
    mostly = inter >= share * np.maximum(parea, 1)[None, :]
    objs = np.flatnonzero(mostly.any(axis=0))
    home[objs] = mostly[:, objs].argmax(axis=0)
    lut = np.arange(parea.size + 1)
    for nucleus in np.unique(home[home >= 0]):
        parts = np.flatnonzero(home == nucleus) + 1
        lut[parts] = parts[0]
    return lut[p]


def drop_off_nucleus_objects(gt: np.ndarray, pred: np.ndarray, share: float = OFF_NUCLEUS_SHARE) -> np.ndarray:
    """The prediction without the objects that have less than ``share`` of their area on labelled nuclei."""
    g, p = np.asarray(gt) > 0, np.asarray(pred).astype(np.int64)
    area = np.bincount(p.ravel())
    on = np.bincount(p[g], minlength=area.size)
    off = on < share * area
    off[0] = True
    return np.where(off[p], 0, p)


def flood_from_markers(fg: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """Split the foreground ``fg`` by ``markers`` (``(H, W)`` int, 0 = none), flooded over the distance to the
    background; a foreground component without a marker stays one object."""
    markers = np.where(fg, markers, 0)
    comp, _ = ndi.label(fg)
    has = np.zeros(comp.max() + 1, dtype=bool)
    has[np.unique(comp[markers > 0])] = True
    markers = np.where(markers > 0, markers, np.where(fg & ~has[comp], comp + markers.max(), 0))
    return watershed(-ndi.distance_transform_edt(fg), markers, mask=fg)


def split_by_true_markers(gt: np.ndarray, pred: np.ndarray, erosion: int = 2) -> np.ndarray:
    """The predicted foreground, split by markers taken from the labels (each labelled nucleus eroded by ``erosion``
    px) with :func:`flood_from_markers`. The mask is the run's; only the splitting is perfect."""
    g, fg = np.asarray(gt).astype(np.int64), np.asarray(pred) > 0
    return flood_from_markers(fg, np.where(ndi.binary_erosion(g > 0, iterations=erosion), g, 0))


def tile_errors(gt: np.ndarray, pred: np.ndarray, border: float = 2.0) -> dict[str, float]:
    """Error decomposition of one tile.

    Args:
        gt: ``(H, W)`` labelled instance map.
        pred: ``(H, W)`` predicted instance map.
        border: a wrong pixel within this many pixels of the other mask counts as a border disagreement.

    Returns:
        ``area_ratio`` (predicted / labelled nucleus area); ``fp_fraction`` (share of predicted pixels that are not
        nucleus) and ``fp_at_border`` (share of those within ``border`` of a labelled nucleus); ``fn_fraction`` and
        ``fn_at_border`` likewise for missed nucleus pixels; ``aji`` of the prediction; ``aji_true_foreground``, the
        AJI of the project's watershed run on the labelled foreground, i.e. what the instance step reaches when the
        mask is perfect; ``merged_fraction`` (:func:`merged_fraction`); ``aji_true_markers``, the AJI of the run's own
        mask split by markers from the labels (:func:`split_by_true_markers`), i.e. what the run reaches when the
        splitting is perfect; ``edge_offset`` (:func:`edge_offset`, pixels) and ``fp_in_false_objects``
        (:func:`fp_in_false_objects`); the AJI with one kind of error repaired by the labels and the rest as predicted:
        ``aji_merges_split`` (:func:`split_merges_by_labels`), ``aji_fragments_joined``
        (:func:`join_fragments_by_labels`), ``aji_off_nucleus_dropped`` (:func:`drop_off_nucleus_objects`).
    """
    g, p = np.asarray(gt) > 0, np.asarray(pred) > 0
    if g.shape != p.shape or g.ndim != 2:
        raise ValueError(f"expected two (H, W) maps of one shape, got {g.shape} and {p.shape}")
    fp, fn = p & ~g, g & ~p
    near_g = ndi.distance_transform_edt(~g) <= border
    near_p = ndi.distance_transform_edt(~p) <= border
    return {
        "area_ratio": float(p.sum() / max(g.sum(), 1)),
        "fp_fraction": float(fp.sum() / max(p.sum(), 1)),
        "fp_at_border": float((fp & near_g).sum() / max(fp.sum(), 1)),
        "fn_fraction": float(fn.sum() / max(g.sum(), 1)),
        "fn_at_border": float((fn & near_p).sum() / max(fn.sum(), 1)),
        "aji": aji(gt, pred),
        "aji_true_foreground": aji(gt, instances_from_map(g)),
        "merged_fraction": merged_fraction(gt, pred),
        "aji_true_markers": aji(gt, split_by_true_markers(gt, pred)),
        "edge_offset": edge_offset(gt, pred),
        "fp_in_false_objects": fp_in_false_objects(gt, pred),
        "aji_merges_split": aji(gt, split_merges_by_labels(gt, pred)),
        "aji_fragments_joined": aji(gt, join_fragments_by_labels(gt, pred)),
        "aji_off_nucleus_dropped": aji(gt, drop_off_nucleus_objects(gt, pred)),
    }
