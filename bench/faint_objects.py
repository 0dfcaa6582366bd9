"""Benchmark: SSimNet's objects with little haematoxylin contrast, dropped at inference or kept (issue 17).

Self-training's purification (``labelfree.transforms.purify_objects``) does not trust an object whose haematoxylin
contrast against a 4 px ring is below half its tile's median object contrast. This measures that contrast rule alone
as an inference filter, after the bundle's instance step, with its constants as they are (the rule and its adoption
criterion were written down before any score: ``bench/results/v6/faint_objects/rule.txt``). Each checkpoint's network
runs once per tile (the bundle's preprocessing and inferer, PyTorch float32); labels are read only to score.

    python -m bench.faint_objects --images ../shared/data/monuseg/train/images \\
        --labels ../shared/data/monuseg/train/labels --ckpts CKPT0,CKPT1,... --out bench/results/v6/faint_objects/monuseg
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import fire
import numpy as np

from bench.marker_depth import nucleus_probabilities
from bench.report_files import save_report
from bench.variant_stats import checkpoint_list, metric_cells, summarise_variants
from labelfree.core.imageio import find_label, list_images, load_instance_map, load_rgb
from labelfree.core.metrics import instance_scores
from labelfree.transforms.instances import instances_from_map, sequential_labels
from labelfree.transforms.purify_objects import object_scores

REPO = Path(__file__).resolve().parents[1]
#: the purification's constants (``purify_instances``): ring width (px) and the fraction of the tile's median contrast
RING, MIN_REL_CONTRAST = 4, 0.5
METRICS = ("dice", "aji", "pq", "precision", "recall")
RULES = ("default", "faint_dropped")


def inference_parameters() -> dict:
    """The instance step's parameters as the bundle's ``inference.json`` sets them."""
    cfg = json.loads((REPO / "bundles" / "ssimnet" / "configs" / "inference.json").read_text())
    keys = {"threshold": "threshold", "min_size": "min_size", "h": "marker_depth"}
    keys |= {k: k for k in ("resplit_irregular", "min_mean_prob", "min_rel_area")}
    return {arg: cfg[key] for arg, key in keys.items()}


def drop_faint_objects(inst: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """``inst`` without its objects below ``MIN_REL_CONTRAST`` × the tile's median contrast; also the number dropped."""
    s = object_scores(rgb, inst, ring=RING)
    if not len(s["label"]):
        return inst, 0
    rel = s["contrast"] / max(float(np.median(s["contrast"])), 1e-3)  # the purification's floor
    keep = np.zeros(int(inst.max()) + 1, bool)
    keep[s["label"][rel >= MIN_REL_CONTRAST]] = True
    return sequential_labels(np.where(keep[inst], inst, 0)), int((rel < MIN_REL_CONTRAST).sum())


def run(images: str, labels: str, out: str, ckpts: str | tuple = "") -> dict:
    """Score the default instances and the contrast rule for every checkpoint; write ``faint_objects.{json,md}``."""
    names = checkpoint_list(ckpts)
    params = inference_parameters()
    paths = {p.stem: p for p in list_images(images)}
    rows = []
    for i, ckpt in enumerate(names):
        for stem, prob in nucleus_probabilities(images, ckpt).items():
            image = paths[stem]
            gt, rgb = load_instance_map(find_label(labels, image)), load_rgb(image)
            inst = instances_from_map(prob, **params)
            faint, dropped = drop_faint_objects(inst, rgb)
            for rule, pred in zip(RULES, (inst, faint)):
                s = instance_scores(gt, pred)
                area = float((pred > 0).sum() / max((gt > 0).sum(), 1))
                row = {"checkpoint": i, "image": stem, "rule": rule, **{m: s[m] for m in METRICS}, "area_ratio": area}
                rows.append(row | {"dropped": dropped if rule == "faint_dropped" else 0})
    result = {"rows": rows, "checkpoints": [str(c or "shipped") for c in names], "date": date.today().isoformat()}
    result["summary"] = summarise(rows)
    report = markdown(result, images, labels, out)
    save_report(out, "faint_objects", result, report)
    return result["summary"]


def summarise(rows: list[dict]) -> dict:
    """Per rule: the metrics' summary (:func:`bench.variant_stats.summarise_variants`, p against the default), the
    objects dropped per tile and the worst predicted / true area."""
    out = summarise_variants(rows, "rule", RULES, METRICS)
    for rule in RULES:
        sel = [r for r in rows if r["rule"] == rule]
        out[rule]["dropped_per_tile"] = float(np.mean([r["dropped"] for r in sel]))
        out[rule]["worst_area_ratio"] = float(max(r["area_ratio"] for r in sel))
    return out


def markdown(result: dict, images: str, labels: str, out: str) -> str:
    s = result["summary"]
    lines = [
        f"# SSimNet: objects of little haematoxylin contrast dropped at inference, `{images}`",
        "",
        f"`python -m bench.faint_objects --images {images} --labels {labels} --ckpts ... --out {out}`; "
        f"{len(result['checkpoints'])} checkpoint(s); mean ± std over checkpoints of the per-tile means; p: Wilcoxon "
        "signed-rank over tiles (scores averaged over checkpoints) against the default; labels only to score.",
        "",
        "| rule | Dice | AJI | PQ | precision | recall | dropped / tile | worst area ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rule, v in s.items():
        cells = " | ".join(metric_cells(v, METRICS))
        lines.append(f"| {rule} | {cells} | {v['dropped_per_tile']:.1f} | {v['worst_area_ratio']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
