"""Benchmark: SSimNet's half-seen rule applied to each inference view, against the default (issue 17).

SSimNet's default inference averages two views of a tile (the tile, and the tile stain-normalised and turned 180°)
and drops an object whose mean nucleus probability over that average is below ``min_mean_prob`` (0.6.0). The variant
``agreed`` also drops an object whose mean probability is below ``min_mean_prob`` in either view on its own: a faint
smudge one view sees and the other does not passes on the average, a nucleus is seen in both. The pixels that are
holes of the averaged map (at most ``threshold``, filled) weigh 1 in every view, as 0.6.0's rule weighs them; then
the small-object rule runs on what is left, as in the bundle. ``min_view_relief`` keeps the foreground and the drops
and changes only where objects are cut: the watershed's relief weights the distance to the background by the smaller
of the views' probabilities instead of their average's (filled holes still weigh 1), so a dip that one view draws
between two touching nuclei is not averaged away. No new constant in either. The rules were written before any score
(``bench/results/v6/recipe/view_agreement_rule.txt``, ``min_view_relief_rule.txt``); labels are read only to score.

Each checkpoint's network runs once per view and tile, with the bundle's own preprocessing, views and network inferer;
``default`` rebuilds the bundle's instances from the averaged output (and must reproduce the harness's figures).

    python -m bench.view_agreement --images ../shared/data/monuseg/train/images \\
        --labels ../shared/data/monuseg/train/labels --ckpts CKPT0,CKPT1,... --out bench/results/view_agreement/monuseg
"""

from __future__ import annotations

import fire
import numpy as np

from bench.ssimnet_variants import score_ssimnet_variants
from labelfree.core.distance import distance_to_background
from labelfree.transforms.contour import fill_mask_holes
from labelfree.transforms.instances import drop_uncertain_objects, instances_from_map

VARIANTS = ("default", "agreed", "min_view_relief")


def agreed_objects(
    inst: np.ndarray, prob: np.ndarray, views: list, threshold: float, min_mean_prob: float
) -> np.ndarray:
    """``inst`` without the objects whose mean probability is below ``min_mean_prob`` in any of ``views``; pixels at
    most ``threshold`` in the averaged ``prob`` (filled holes) weigh 1. Ids renumbered ``1..m``."""
    for view in views:
        # the holes are the averaged map's: weigh them 1 here and let every other pixel count at this view's value
        inst = drop_uncertain_objects(inst, np.where(prob <= threshold, 1.0, view), -np.inf, min_mean_prob)
    return inst


def min_view_distance(prob: np.ndarray, views: list, threshold: float, fill_holes: bool = True) -> np.ndarray:
    """``distance`` for :func:`labelfree.transforms.instances.instances_from_map` that makes its relief the distance to
    the averaged map's background weighted by the smallest view probability (``instances_from_map`` weighs the distance
    by ``prob``, or 1 in filled holes; this scales it by ``min(views) / prob`` outside the holes)."""
    fg = prob > threshold
    if fill_holes:
        fg = fill_mask_holes(fg)
    low = np.minimum.reduce([np.asarray(v, np.float64) for v in views])
    scale = np.where(prob > threshold, low / np.maximum(prob, 1e-6), 1.0)
    return distance_to_background(fg) * scale


def _view_variants(prob: np.ndarray, views: list, item: dict, kwargs: dict) -> dict[str, np.ndarray]:
    """``default``, ``agreed`` and ``min_view_relief`` (both drops after the split, as ``instances_from_map`` does)."""
    threshold, min_mean_prob = kwargs["threshold"], kwargs["min_mean_prob"]
    inst = instances_from_map(prob, **kwargs)
    return {
        "default": inst,
        "agreed": agreed_objects(inst, prob, views, threshold, min_mean_prob),
        "min_view_relief": instances_from_map(prob, distance=min_view_distance(prob, views, threshold), **kwargs),
    }


def run(images: str, labels: str, out: str, ckpts: str | tuple = "", threads: int = 2) -> dict:
    """Score ``default``, ``agreed`` and ``min_view_relief`` for every checkpoint; write ``view_agreement.{json,md}``
    under ``out``."""
    title = "SSimNet: the two inference views kept apart"
    return score_ssimnet_variants(
        images, labels, out, ckpts, threads, VARIANTS, _view_variants, "view_agreement", title
    )


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
