"""Benchmark: SSimNet's watershed relief weighted by the tile's haematoxylin as well, against the default (issue 17).

The instance step floods a relief: the distance to the background weighted by the nucleus probability (filled holes
weigh 1), so a dip the network draws between two touching nuclei deepens the saddle between them. Where it draws none,
the nuclei stay merged: merges hold most of the remaining AJI gap on MoNuSeg (SSimNet's docs/README.md, "Measured after
0.11.5"). The paler line where two nuclei touch is often still in the stain. ``haem_relief`` multiplies the relief by
:func:`haematoxylin_weight` (the tile's haematoxylin, smoothed, over its median on the foreground, at most 1; filled
holes 1): the same mask and drops, only the cuts move. DCGN's benchmark (``bench.dcgn_posterior_variants``) scores
the same weight on its near-binary posterior. The rule was written before any score
(``bench/results/v6/haem_relief/rule.txt``); labels are read only to score.

    python -m bench.haem_relief --images ../shared/data/monuseg/train/images \\
        --labels ../shared/data/monuseg/train/labels --ckpts CKPT0,CKPT1,... --out bench/results/v6/haem_relief/monuseg
"""

from __future__ import annotations

import fire
import numpy as np
from scipy import ndimage as ndi

from bench.ssimnet_variants import score_ssimnet_variants
from labelfree.core.distance import distance_to_background
from labelfree.transforms.contour import fill_mask_holes
from labelfree.transforms.instances import instances_from_map
from labelfree.transforms.io import tensor_to_rgb
from labelfree.transforms.stain import tile_stain_concentrations

VARIANTS = ("default", "haem_relief")
#: smoothing (pixels) of the haematoxylin before it weighs the relief (set with the rule, not fitted)
HAEM_SIGMA = 1.0


def haematoxylin_weight(haematoxylin: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` weight in [0, 1]: the haematoxylin smoothed (sigma :data:`HAEM_SIGMA`) over its median on ``mask``,
    clipped at 1; 1 outside ``mask`` (the filled holes of a nucleus are not a boundary).

    Args:
        haematoxylin: ``(H, W)`` haematoxylin concentration.
        mask: ``(H, W)`` bool foreground before hole filling.
    """
    smooth = ndi.gaussian_filter(np.asarray(haematoxylin, np.float64), HAEM_SIGMA)
    level = float(np.median(smooth[mask])) if mask.any() else 1.0
    return np.where(mask, np.clip(smooth / max(level, 1e-6), 0.0, 1.0), 1.0)


def haem_distance(prob: np.ndarray, haematoxylin: np.ndarray, threshold: float) -> np.ndarray:
    """``distance`` for :func:`labelfree.transforms.instances.instances_from_map` that makes its relief the default's
    (the distance to the filled foreground weighted by ``prob``) times :func:`haematoxylin_weight`."""
    mask = prob > threshold
    return distance_to_background(fill_mask_holes(mask)) * haematoxylin_weight(haematoxylin, mask)


def _haem_variants(prob: np.ndarray, views: list, item: dict, kwargs: dict) -> dict[str, np.ndarray]:
    """``default`` and ``haem_relief`` for one tile (``views`` unused: the relief weighs the views' average)."""
    rgb = tensor_to_rgb(item["tile"])
    if rgb.shape[:2] != prob.shape:
        raise ValueError("the network saw the tile at another scale; score it at its own")
    distance = haem_distance(prob, tile_stain_concentrations(rgb)[0][0], kwargs["threshold"])
    return {
        "default": instances_from_map(prob, **kwargs),
        "haem_relief": instances_from_map(prob, distance=distance, **kwargs),
    }


def run(images: str, labels: str, out: str, ckpts: str | tuple = "", threads: int = 2) -> dict:
    """Score ``default`` and ``haem_relief`` for every checkpoint; write ``haem_relief.{json,md}`` under ``out``."""
    title = "SSimNet: the watershed relief weighted by the haematoxylin"
    return score_ssimnet_variants(images, labels, out, ckpts, threads, VARIANTS, _haem_variants, "haem_relief", title)


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
