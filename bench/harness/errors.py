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
    "edge_offset",
    "flood_from_markers",
    "fp_in_false_objects",
    "merged_fraction",
    "split_by_true_markers",
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
)


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
        (:func:`fp_in_false_objects`).
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
    }
