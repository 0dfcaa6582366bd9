"""Benchmark: inference-only changes to how DCGN turns its softmax into nuclei (issue 14), against the default.

Each checkpoint's network runs once per tile (the bundle's preprocessing, network and inferer); then:

* ``default``: the bundle's inference (0.4.0's one EM step on the tile's stain concentrations, nuclei = the
  haematoxylin-richest class, split by the project's watershed, the half-seen objects (``min_mean_softmax``, 0.6.0)
  and the small ones dropped);
* ``local_excess``: the same EM step with a third feature, the haematoxylin concentration's excess over its Gaussian
  blur (sigma = 2 × the equivalent radius of the default's median nucleus on the tile), so that "nucleus" can be a
  compact blob rather than any haematoxylin-rich area;
* ``softmax_relief``: the default's nuclei mask, split on a relief that weighs the distance to the background by the
  network's softmax for the nuclei class instead of by the near-binary mixture posterior;
* ``softmax_and``: a pixel is nuclei only where the mixture posterior is above 0.5 *and* the network's own softmax for
  the nuclei class is at least 0.5, the pixel-level counterpart of 0.6.0's half-seen objects (same split and drops);
* ``haem_relief``: the default's nuclei mask and drops, split on a relief that weighs the distance to the background
  by the tile's haematoxylin (``bench.haem_relief.haematoxylin_weight``) instead of by the posterior, so that
  the paler line where two nuclei touch deepens the saddle between them;
* ``haem_resplit``: the default's first split, and only the irregular objects' re-split
  (``resplit_irregular_objects``) on the default's relief times the same haematoxylin weight;
* ``snap_tile`` / ``snap_objects``: the default's instances with their outlines moved to the steepest haematoxylin,
  one offset per tile or per object (``bench.boundary_snap``).

The rules and their adoption criterion were written before any score (``bench/results/dcgn_local_contrast/``,
``bench/results/dcgn_softmax_and/rule.txt``, ``bench/results/dcgn_haem_relief/rule.txt``,
``bench/results/dcgn_boundary_snap/rule.txt``); labels are read only to score. ``--variants`` scores a subset (the
default is always scored).

    python -m bench.dcgn_posterior_variants --images ../shared/data/monuseg/train/images \\
        --labels ../shared/data/monuseg/train/labels --ckpts CKPT0,CKPT1,... --out bench/results/dcgn_local_contrast/monuseg
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import fire
import numpy as np
import torch
from scipy import ndimage as ndi

from bench.boundary_snap import snap_objects, snap_tile
from bench.haem_relief import haematoxylin_weight
from bench.report_files import save_report
from bench.variant_stats import checkpoint_list, checkpoint_tiles, summarise_variants, variants_markdown
from labelfree.core.distance import distance_to_background
from labelfree.core.metrics import instance_scores
from labelfree.engines.slides import bundle_parser
from labelfree.transforms.contour import fill_mask_holes
from labelfree.transforms.instances import (
    drop_small_objects,
    drop_uncertain_objects,
    foreground_relief,
    instances_from_map,
    resplit_irregular_objects,
)
from labelfree.transforms.io import tensor_to_rgb

REPO = Path(__file__).resolve().parents[1]
VARIANTS = (
    "default",
    "local_excess",
    "softmax_relief",
    "softmax_and",
    "haem_relief",
    "haem_resplit",
    "snap_tile",
    "snap_objects",
)
METRICS = ("dice", "aji", "pq", "precision", "recall")
#: blur scale of ``local_excess`` in units of the tile's median nucleus radius (set with the rule, not fitted)
EXCESS_SIGMA_RADII = 2.0


def local_excess(features: np.ndarray, nuclei: np.ndarray, min_size: int) -> np.ndarray:
    """``(3, H, W)``: the stain features and the haematoxylin's excess over its blur at the tile's nucleus scale."""
    lab, _ = ndi.label(nuclei)
    areas = np.bincount(lab.ravel())[1:]
    areas = areas[areas >= min_size]
    radius = float(np.sqrt(np.median(areas) / np.pi)) if areas.size else 8.0
    h = np.asarray(features[0], np.float64)
    excess = h - ndi.gaussian_filter(h, EXCESS_SIGMA_RADII * radius, mode="reflect")
    return np.concatenate([np.asarray(features, np.float32), excess[None].astype(np.float32)])


def softmax_and(posterior: np.ndarray, softmax: np.ndarray, min_mean_softmax: float, **kwargs) -> np.ndarray:
    """Nuclei where the posterior is above 0.5 and the softmax at least 0.5, split and dropped as the default does.

    Args:
        posterior, softmax: ``(H, W)`` the nuclei class's mixture posterior and network softmax.
        min_mean_softmax: the half-seen rule's constant (0 = off).
        kwargs: ``instances_from_map``'s, ``min_rel_area`` included (applied after the half-seen rule).
    """
    min_rel_area = kwargs.pop("min_rel_area", 0.0)
    inst = instances_from_map(np.where(softmax >= 0.5, posterior, 0.0), threshold=0.5, **kwargs)
    if min_mean_softmax > 0:
        inst = drop_uncertain_objects(inst, softmax, -np.inf, min_mean_softmax)
    return drop_small_objects(inst, min_rel_area) if min_rel_area > 0 else inst


def haem_relief(
    posterior: np.ndarray,
    softmax: np.ndarray,
    haematoxylin: np.ndarray,
    min_mean_softmax: float,
    resplit_only: bool = False,
    **kwargs,
) -> np.ndarray:
    """The default's nuclei (posterior above 0.5) split on the distance weighted by the haematoxylin, then dropped.

    Args:
        posterior, softmax: ``(H, W)`` the nuclei class's mixture posterior and network softmax.
        haematoxylin: ``(H, W)`` the tile's haematoxylin concentration (the mixture's feature 0).
        min_mean_softmax: the half-seen rule's constant (0 = off).
        resplit_only: split first as the default does and weigh only the re-split of irregular objects
            (``haem_resplit``); ``False``: the weighted distance replaces the relief of both (``haem_relief``).
        kwargs: ``instances_from_map``'s, ``min_rel_area`` included (applied after the half-seen rule).

    Returns:
        ``(H, W)`` int32 instances.
    """
    min_rel_area = kwargs.pop("min_rel_area", 0.0)
    mask = posterior > 0.5
    weight = haematoxylin_weight(haematoxylin, mask)
    if resplit_only:
        resplit = kwargs.pop("resplit_irregular", False)
        inst = instances_from_map(posterior, threshold=0.5, **kwargs)
        if resplit:
            _, relief = foreground_relief(posterior, 0.5, kwargs["min_size"])
            inst = resplit_irregular_objects(inst, relief * weight, kwargs["h"], kwargs["min_size"])
    else:
        # a boolean mask: the relief is the given distance alone, not weighted again by a probability
        inst = instances_from_map(mask, distance=distance_to_background(fill_mask_holes(mask)) * weight, **kwargs)
    if min_mean_softmax > 0:
        inst = drop_uncertain_objects(inst, softmax, -np.inf, min_mean_softmax)
    return drop_small_objects(inst, min_rel_area) if min_rel_area > 0 else inst


def run(
    images: str, labels: str, out: str, ckpts: str | tuple = "", threads: int = 2, variants: str | tuple = ""
) -> dict:
    """Score the variants (``variants``: comma-separated names, default all) for every checkpoint; write
    ``dcgn_posterior_variants.{json,md}`` under ``out``."""
    asked = [v for v in (variants.split(",") if isinstance(variants, str) else variants) if v]
    chosen = [v for v in VARIANTS if v == "default" or not asked or v in asked]
    unknown = set(asked) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variant(s) {sorted(unknown)}; choose from {VARIANTS}")
    torch.set_num_threads(threads)
    names = checkpoint_list(ckpts)
    parser = bundle_parser(REPO / "bundles" / "dcgn", {"dataset_dir": str(images)})
    preprocessing = parser.get_parsed_content("preprocessing")
    network, inferer = parser.get_parsed_content("network"), parser.get_parsed_content("inferer")
    from scripts.classes import NameClassesd, haematoxylin_order, tile_mixture_posterior  # the bundle's

    kwargs = {"min_size": parser["min_size"], "h": parser["marker_depth"]}
    kwargs |= {"resplit_irregular": parser["resplit_irregular"], "min_rel_area": parser["min_rel_area"]}
    half_seen = parser["min_mean_softmax"]
    naming = NameClassesd(
        image_key="tile",
        instances_from=parser["instances_from"],
        class_posterior="mixture",
        min_mean_softmax=half_seen,
        **kwargs,
    )
    rows = []
    shipped = REPO / "bundles" / "dcgn" / "models" / "model.pt"
    for i, path, gt, item in checkpoint_tiles(network, names, shipped, images, labels, preprocessing):
        with torch.inference_mode():
            prob = inferer(torch.as_tensor(item["image"])[None].float(), network)[0].softmax(0).numpy()
        feats = np.asarray(item["features"])
        post = tile_mixture_posterior(prob, feats)
        nuclei = haematoxylin_order(post.argmax(0), tensor_to_rgb(item["tile"]), len(post))[-1]
        mask = post[nuclei] > 0.5
        default = naming({"pred": prob, "tile": item["tile"], "features": feats})["inst"][0]
        for variant in chosen:
            if variant == "default":
                inst = default
            elif variant == "snap_tile":
                inst = snap_tile(default, feats[0])[0]
            elif variant == "snap_objects":
                inst = snap_objects(default, feats[0])[0]
            elif variant == "local_excess":
                extra = local_excess(feats, mask, kwargs["min_size"])
                inst = naming({"pred": prob, "tile": item["tile"], "features": extra})["inst"][0]
            elif variant == "softmax_relief":
                relief = distance_to_background(fill_mask_holes(mask)) * prob[nuclei]
                inst = instances_from_map(post[nuclei], threshold=0.5, distance=relief, **kwargs)
            elif variant in ("haem_relief", "haem_resplit"):
                resplit_only = variant == "haem_resplit"
                inst = haem_relief(post[nuclei], prob[nuclei], feats[0], half_seen, resplit_only, **kwargs)
            else:
                inst = softmax_and(post[nuclei], prob[nuclei], half_seen, **kwargs)
            s = instance_scores(gt, inst)
            rows.append({"checkpoint": i, "image": path.stem, "variant": variant, **{m: s[m] for m in METRICS}})
    result = {"rows": rows, "checkpoints": [str(c or "shipped") for c in names], "date": date.today().isoformat()}
    result["summary"] = summarise_variants(rows, "variant", tuple(chosen), METRICS)
    report = markdown(result, images, labels, out)
    save_report(out, "dcgn_posterior_variants", result, report)
    return result["summary"]


def markdown(result: dict, images: str, labels: str, out: str) -> str:
    command = f"python -m bench.dcgn_posterior_variants --images {images} --labels {labels} --ckpts ... --out {out}"
    title = f"DCGN: inference variants of the nuclei posterior, `{images}`"
    return variants_markdown(title, command, len(result["checkpoints"]), result["summary"], METRICS)


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
