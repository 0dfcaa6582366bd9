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

from collections.abc import Callable
from datetime import date
from pathlib import Path

import fire
import numpy as np
import torch

from bench.report_files import save_report
from bench.variant_stats import checkpoint_list, checkpoint_tiles, summarise_variants, variants_markdown
from labelfree.core.distance import distance_to_background
from labelfree.core.metrics import instance_scores
from labelfree.engines.slides import bundle_parser
from labelfree.transforms.contour import fill_mask_holes
from labelfree.transforms.instances import drop_small_objects, drop_uncertain_objects, instances_from_map
from labelfree.transforms.scale import MatchSpatialSize

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("default", "agreed", "min_view_relief")
METRICS = ("dice", "aji", "pq", "precision", "recall")


def view_probabilities(flip_inferer, image: torch.Tensor, network: torch.nn.Module) -> tuple[np.ndarray, list]:
    """The averaged nucleus probability and each view's, as ``FlipEnsembleInferer`` computes the average.

    Args:
        flip_inferer: the bundle's ``labelfree.engines.inferers.FlipEnsembleInferer``.
        image: ``(1, C, H, W)`` network input.
        network: the loaded network.

    Returns:
        ``(H, W)`` probability of the mean logits, and one ``(H, W)`` probability per view.
    """
    total, recoloured_input, views = None, None, []
    for dims, recoloured in zip(flip_inferer.flips, flip_inferer.recoloured):
        x = image
        if recoloured:
            if recoloured_input is None:
                recoloured_input = torch.as_tensor(flip_inferer.recolour(image[0]))[None].to(image)
            x = recoloured_input
        out = flip_inferer.inferer(x.flip(dims) if dims else x, network)
        out = (out.flip(dims) if dims else out).float()
        views.append(out.softmax(1)[0, 1].numpy())
        total = out if total is None else total + out
    return (total / len(views)).softmax(1)[0, 1].numpy(), views


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


def score_ssimnet_variants(
    images: str,
    labels: str,
    out: str,
    ckpts: str | tuple,
    threads: int,
    variants: tuple[str, ...],
    make_variants: Callable[[np.ndarray, list, dict, dict], dict[str, np.ndarray]],
    stem: str,
    title: str,
) -> dict:
    """Score instance-step variants of SSimNet's inference for every checkpoint and tile, as the bundle runs it.

    Each checkpoint's network runs once per view and tile (:func:`view_probabilities`); ``make_variants(prob, views,
    item, kwargs)`` returns each variant's instances from the averaged probability, the views' own, the preprocessed
    item and the bundle's instance-step keyword arguments; the small-object rule runs on each, as in the bundle, and
    the instances are brought back to the tile's size before scoring. Writes ``<stem>.{json,md}`` under ``out``.

    Returns:
        the per-variant summary (:func:`bench.variant_stats.summarise_variants`).
    """
    torch.set_num_threads(threads)
    names = checkpoint_list(ckpts)
    parser = bundle_parser(REPO / "bundles" / "ssimnet", {"dataset_dir": str(images)})
    preprocessing = parser.get_parsed_content("preprocessing")
    network, flips = parser.get_parsed_content("network"), parser.get_parsed_content("flip_inferer")
    kwargs = {"threshold": parser["threshold"], "min_size": parser["min_size"], "h": parser["marker_depth"]}
    kwargs |= {"resplit_irregular": parser["resplit_irregular"], "min_mean_prob": parser["min_mean_prob"]}
    rows = []
    shipped = REPO / "bundles" / "ssimnet" / "models" / "model.pt"
    for i, path, gt, item in checkpoint_tiles(network, names, shipped, images, labels, preprocessing):
        with torch.inference_mode():
            prob, views = view_probabilities(flips, torch.as_tensor(item["image"])[None].float(), network)
        to_tile = MatchSpatialSize(tuple(item["tile"].shape[-2:]), True)
        for variant, objects in make_variants(prob, views, item, kwargs).items():
            objects = drop_small_objects(objects, parser["min_rel_area"])
            objects = np.asarray(to_tile(torch.as_tensor(objects[None])))[0]
            s = instance_scores(gt, objects)
            rows.append({"checkpoint": i, "image": path.stem, "variant": variant, **{m: s[m] for m in METRICS}})
    result = {"rows": rows, "checkpoints": [str(c or "shipped") for c in names], "date": date.today().isoformat()}
    result["summary"] = summarise_variants(rows, "variant", variants, METRICS)
    command = f"python -m bench.{stem} --images {images} --labels {labels} --ckpts ... --out {out}"
    report = variants_markdown(f"{title}, `{images}`", command, len(names), result["summary"], METRICS)
    save_report(out, stem, result, report)
    print(report)
    return result["summary"]


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
