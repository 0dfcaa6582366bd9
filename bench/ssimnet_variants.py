"""What SSimNet's inference-variant benchmarks share: the bundle's views of each tile, and one scoring loop.

A variant benchmark (``bench.view_agreement``, ``bench.haem_relief``) changes only how the nucleus probability becomes
instances. :func:`score_ssimnet_variants` runs the bundle's preprocessing, network and views once per checkpoint and
tile (:func:`view_probabilities`), hands the probabilities to the benchmark's own variants, and scores each variant's
instances as the bundle would write them (the small-object rule, the tile's own size); labels are read only to score.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import torch

from bench.report_files import save_report
from bench.variant_stats import checkpoint_list, checkpoint_tiles, summarise_variants, variants_markdown
from labelfree.core.metrics import instance_scores
from labelfree.engines.slides import bundle_parser
from labelfree.transforms.instances import drop_small_objects
from labelfree.transforms.scale import MatchSpatialSize

REPO = Path(__file__).resolve().parents[1]
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
    after_drop: Callable[[str, np.ndarray, dict], np.ndarray] | None = None,
) -> dict:
    """Score instance-step variants of SSimNet's inference for every checkpoint and tile, as the bundle runs it.

    Each checkpoint's network runs once per view and tile (:func:`view_probabilities`); ``make_variants(prob, views,
    item, kwargs)`` returns each variant's instances from the averaged probability, the views' own, the preprocessed
    item and the bundle's instance-step keyword arguments; the small-object rule runs on each, as in the bundle, once.
    ``after_drop(variant, instances, item)``, when given, then changes a variant's instances (a step that works on
    the bundle's finished output, so it must not see the rule twice); last, the instances are brought back to the
    tile's size before scoring. Writes ``<stem>.{json,md}`` under ``out``.

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
            if after_drop is not None:
                objects = after_drop(variant, objects, item)
            objects = np.asarray(to_tile(torch.as_tensor(objects[None])))[0]
            s = instance_scores(gt, objects)
            rows.append({"checkpoint": i, "image": path.stem, "variant": variant, **{m: s[m] for m in METRICS}})
    result = {"rows": rows, "checkpoints": [str(c or "shipped") for c in names], "date": date.today().isoformat()}
    result["summary"] = summarise_variants(rows, "variant", variants, METRICS)
    command = f"python -m bench.{stem} --images {images} --labels {labels} --ckpts ... --out {out}"
    report = variants_markdown(f"{title}, `{images}`", command, len(names), result["summary"], METRICS)
    save_report(out, stem, result, report)
    return result["summary"]
