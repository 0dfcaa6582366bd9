"""Benchmark: SSimNet objects the network half-sees, dropped or kept, scored on one set of probabilities.

The shipped network runs once per tile (the bundle's inferer: the tile and its 180° rotation, float32; PyTorch, so
the probabilities do not depend on ONNX Runtime being installed) and its nucleus probability is kept; the bundle's
instance step (threshold 0.25, marker depth 2 px, irregular objects re-split) makes the objects, and each rule keeps
some of them (labels only to score):

* ``keep_all``: every object (SSimNet 0.5.1 and before);
* ``mean_prob_holes_as_1``: objects whose mean probability is at least 0.5, the rim value of the soft labels, with
  the pixels of filled holes counted as 1, as the relief counts them (the default since 0.6.0,
  ``labelfree.transforms.instances.drop_uncertain_objects``);
* ``mean_prob``: the same with filled holes at their own (low) probability: a vesicular nucleus's pale inside then
  pulls its mean down;
* ``peak_prob``: objects whose highest probability reaches 0.5.

Per rule and data set: Dice, AJI, PQ (per tile, then averaged), the Wilcoxon signed-rank p of each against
``keep_all`` on the per-tile scores, the mean and worst predicted / true nucleus area, and the objects dropped per tile.

    python -m bench.uncertain_objects --images ../shared/data/monuseg/train/images \\
        --labels ../shared/data/monuseg/train/labels --out bench/results/v5/uncertain_objects/monuseg
"""

from __future__ import annotations

from datetime import date

import fire
import numpy as np
from scipy import ndimage as ndi

from bench.marker_depth import nucleus_probabilities
from bench.report_files import save_report
from bench.signed_rank import signed_rank_p
from labelfree.core.imageio import find_label, list_images, load_instance_map
from labelfree.core.metrics import aji, panoptic_quality, pixel_scores
from labelfree.transforms.instances import drop_uncertain_objects, instances_from_map, sequential_labels

THRESHOLD, MIN_SIZE, DEPTH = 0.25, 30, 2.0
#: the soft labels' value on a nucleus's outermost ring
RIM = 0.5
RULES = ("keep_all", "mean_prob_holes_as_1", "mean_prob", "peak_prob")


def apply_rule(rule: str, inst: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """The instances ``inst`` (drawn from ``prob``) that ``rule`` keeps, numbered ``1..m``."""
    if rule == "keep_all":
        return inst
    if rule == "mean_prob_holes_as_1":
        return drop_uncertain_objects(inst, prob, THRESHOLD, RIM)
    ids = np.arange(1, int(inst.max()) + 1)
    if ids.size == 0:
        return inst
    stat = ndi.mean(prob, inst, ids) if rule == "mean_prob" else ndi.maximum(prob, inst, ids)
    keep = np.r_[False, np.asarray(stat) >= RIM]
    return sequential_labels(np.where(keep[inst], inst, 0))


def run(images: str, labels: str, out: str, rules: str | tuple = RULES) -> dict:
    """Score every rule on the tiles of ``images``; write ``uncertain_objects.{json,md}`` under ``out``."""
    names = [r for r in (rules.split(",") if isinstance(rules, str) else rules) if r]
    unknown = sorted(set(names) - set(RULES))
    if unknown:
        raise SystemExit(f"unknown rules {unknown}; known: {', '.join(RULES)}")
    probs = nucleus_probabilities(images)
    rows: dict[str, dict[str, list[float]]] = {r: {} for r in names}
    for path in list_images(images):
        prob = probs[path.stem]
        gt = load_instance_map(find_label(labels, path))
        base = instances_from_map(prob, threshold=THRESHOLD, min_size=MIN_SIZE, h=DEPTH, resplit_irregular=True)
        for rule in names:
            inst = apply_rule(rule, base, prob)
            area = float((inst > 0).sum()) / max(float((gt > 0).sum()), 1.0)
            dropped = float(base.max() - inst.max())
            scores = [pixel_scores(gt, inst)["dice"], aji(gt, inst), panoptic_quality(gt, inst)["pq"], area, dropped]
            rows[rule][path.stem] = scores
    result = {"rules": rows, "images": images, "date": date.today().isoformat()}
    save_report(out, "uncertain_objects", result, markdown(result, images, labels, out))
    return result


def markdown(result: dict, images: str, labels: str, out: str) -> str:
    rows = result["rules"]
    ref = next(iter(rows))
    tiles = sorted(rows[ref])
    lines = [
        f"Objects of the shipped SSimNet kept or dropped, {len(tiles)} tiles of `{images}` ({result['date']}; labels only "
        f"to score; p: Wilcoxon signed-rank against `{ref}` on the per-tile scores):",
        "",
        f"`python -m bench.uncertain_objects --images {images} --labels {labels} --out {out}`",
        "",
        "| rule | Dice | AJI | PQ | p (Dice / AJI / PQ) | mean area ratio | worst area ratio | objects dropped / tile |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = np.array([rows[ref][t] for t in tiles])
    for rule, per_tile in rows.items():
        a = np.array([per_tile[t] for t in tiles])
        if rule == ref:
            p = "–"
        else:
            p = " / ".join(f"{signed_rank_p(a[:, k], base[:, k]):.2g}" for k in range(3))
        lines.append(
            f"| {rule} | {a[:, 0].mean():.3f} | {a[:, 1].mean():.3f} | {a[:, 2].mean():.3f} | {p} | "
            f"{a[:, 3].mean():.2f} | {a[:, 3].max():.2f} | {a[:, 4].mean():.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
