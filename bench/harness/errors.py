"""Where a tile's segmentation errors lie: at nucleus borders, in whole missed or extra objects, or in the splitting.

Labels are read only to analyse a finished run; nothing here feeds back into a method.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from labelfree.core.metrics import aji
from labelfree.transforms.instances import instances_from_map

__all__ = ["ERROR_COLUMNS", "tile_errors"]

ERROR_COLUMNS = (
    "area_ratio",
    "fp_fraction",
    "fp_at_border",
    "fn_fraction",
    "fn_at_border",
    "aji",
    "aji_true_foreground",
)


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
        mask is perfect.
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
    }
