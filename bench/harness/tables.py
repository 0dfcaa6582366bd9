"""Tables of the comparison: mean ± std (best run) per method, Wilcoxon tests, degeneration counts, speed.

Everything here works on plain rows, ``{"method", "seed", "image", <metric>: float, ...}``, one per method, seed and
image, so it is testable on fixed numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from scipy.stats import wilcoxon

__all__ = [
    "METRICS",
    "ORACLE_METRICS",
    "COLLAPSE_FRACTION",
    "EMPTY_FRACTION",
    "INSTABILITY_STD",
    "per_seed_means",
    "summarise",
    "wilcoxon_vs_best",
    "degeneration",
    "results_table",
    "degeneration_table",
    "speed_table",
]

METRICS = ("dice", "aji", "aji_plus", "pq", "precision", "recall")
ORACLE_METRICS = ("oracle_dice", "oracle_aji")
#: DCGN Table IV: a class covering more than 97 % of an image is a collapse, one covering less than 1 % is empty
COLLAPSE_FRACTION = 0.97
EMPTY_FRACTION = 0.01
#: DCGN Table IV: a method is unstable when the std of its per-run mean Dice exceeds 0.08
INSTABILITY_STD = 0.08


def per_seed_means(rows: Sequence[dict], metric: str) -> dict[str, dict[int, float]]:
    """``{method: {seed: mean of metric over images}}``."""
    acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get(metric) is not None and not math.isnan(r[metric]):
            acc[r["method"]][r["seed"]].append(r[metric])
    return {m: {s: float(np.mean(v)) for s, v in seeds.items()} for m, seeds in acc.items()}


def summarise(rows: Sequence[dict], metrics: Sequence[str] = METRICS + ORACLE_METRICS) -> dict[str, dict]:
    """``{method: {metric: {"mean", "std", "best", "runs"}}}`` over the per-seed means (std with ddof 0)."""
    out: dict[str, dict] = defaultdict(dict)
    for metric in metrics:
        for method, seeds in per_seed_means(rows, metric).items():
            v = np.array(list(seeds.values()))
            out[method][metric] = {
                "mean": float(v.mean()),
                "std": float(v.std()),
                "best": float(v.max()),
                "runs": len(v),
            }
    return dict(out)


def _per_image(rows: Sequence[dict], method: str, metric: str) -> dict[str, float]:
    acc: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["method"] == method and r.get(metric) is not None:
            acc[r["image"]].append(r[metric])
    return {k: float(np.mean(v)) for k, v in acc.items()}


def wilcoxon_vs_best(rows: Sequence[dict], metric: str) -> tuple[str | None, dict[str, float | None]]:
    """Two-sided Wilcoxon signed-rank p-value of every method against the best one (highest mean of ``metric``).

    Pairs are images, each method's value being its mean over seeds. The best method, a method with fewer than two
    shared images, or one identical to the best on every image gets ``None``.

    Returns:
        ``(best method, {method: p or None})``.
    """
    summary = summarise(rows, (metric,))
    if not summary:
        return None, {}
    best = max(summary, key=lambda m: summary[m][metric]["mean"])
    ref = _per_image(rows, best, metric)
    out: dict[str, float | None] = {}
    for method in summary:
        other = _per_image(rows, method, metric)
        shared = sorted(set(ref) & set(other))
        diffs = np.array([other[k] - ref[k] for k in shared])
        if method == best or len(shared) < 2 or not np.any(diffs):
            out[method] = None
        else:
            out[method] = float(wilcoxon(diffs).pvalue)
    return best, out


def degeneration(
    rows: Sequence[dict], collapse: float = COLLAPSE_FRACTION, empty: float = EMPTY_FRACTION
) -> dict[str, dict]:
    """DCGN Table IV counts per method: image-runs with a collapse (one class > ``collapse`` of the image) or an
    empty class (< ``empty``), out of all image-runs, and the instability flag (std of per-seed mean Dice > 0.08)."""
    out: dict[str, dict] = {}
    dice = per_seed_means(rows, "dice")
    for method in dict.fromkeys(r["method"] for r in rows):
        fr = [r["class_fractions"] for r in rows if r["method"] == method and r.get("class_fractions")]
        std = float(np.std(list(dice.get(method, {}).values()))) if dice.get(method) else float("nan")
        out[method] = {
            "image_runs": len(fr),
            "collapse": sum(max(f) > collapse for f in fr),
            "empty_class": sum(min(f) < empty for f in fr),
            "runs": len(dice.get(method, {})),
            "dice_std": std,
            "unstable": bool(std > INSTABILITY_STD),
        }
    return out


def _cell(stats: dict | None, metric: str) -> str:
    if not stats or metric not in stats:
        return "–"
    s = stats[metric]
    if s["runs"] == 1:
        return f"{s['mean']:.3f}"
    return f"{s['mean']:.3f} ± {s['std']:.3f} ({s['best']:.3f})"


def _p(p: float | None) -> str:
    return "best" if p is None else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")


def results_table(rows: Sequence[dict], methods: Sequence[str], failures: dict[str, str] | None = None) -> str:
    """Markdown: one row per method, mean ± std (best run) over seeds per metric, Wilcoxon p vs the best method for
    Dice and AJI, then the oracle columns (labels used to pick the class: the papers' protocol, not label-free)."""
    failures = failures or {}
    summary = summarise(rows)
    _, p_dice = wilcoxon_vs_best(rows, "dice")
    _, p_aji = wilcoxon_vs_best(rows, "aji")
    head = ["method", "runs", *METRICS, "p (Dice)", "p (AJI)", "oracle Dice", "oracle AJI"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in methods:
        if method in failures:
            lines.append(f"| {method} | failed: {failures[method]} |" + " |" * (len(head) - 2))
            continue
        s = summary.get(method)
        runs = s["dice"]["runs"] if s and "dice" in s else 0
        cells = [_cell(s, m) for m in METRICS]
        ps = [_p(p_dice.get(method)) if method in p_dice else "–", _p(p_aji.get(method)) if method in p_aji else "–"]
        lines.append("| " + " | ".join([method, str(runs), *cells, *ps, *(_cell(s, m) for m in ORACLE_METRICS)]) + " |")
    return "\n".join(lines)


def degeneration_table(rows: Sequence[dict], methods: Sequence[str], n_classes: dict[str, int]) -> str:
    """Markdown table of :func:`degeneration`."""
    deg = degeneration(rows)
    lines = [
        "| method | classes | runs | collapse (> 97 %) | empty class (< 1 %) | std of run Dice | unstable (> 0.08) |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        if method not in deg:
            continue
        d = deg[method]
        std = "–" if d["runs"] < 2 else f"{d['dice_std']:.3f}"
        lines.append(
            f"| {method} | {n_classes.get(method, '?')} | {d['runs']} | {d['collapse']} / {d['image_runs']} | "
            f"{d['empty_class']} / {d['image_runs']} | {std} | {'yes' if d['unstable'] else 'no'} |"
        )
    return "\n".join(lines)


def speed_table(timings: dict[str, list[dict]], methods: Sequence[str]) -> str:
    """Markdown: mean over runs of seconds per image (pseudo labels, inference), training seconds, peak memory."""
    cols = (
        ("pseudo_label_seconds_per_image", "pseudo labels (s/image)", "{:.2f}"),
        ("train_seconds", "training (s)", "{:.0f}"),
        ("inference_seconds_per_image", "inference (s/image)", "{:.2f}"),
        ("peak_memory_mb", "peak memory (MB)", "{:.0f}"),
    )
    lines = ["| method | " + " | ".join(c[1] for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for method in methods:
        runs = timings.get(method, [])
        if not runs:
            continue
        cells = []
        for key, _, fmt in cols:
            v = [r[key] for r in runs if r.get(key) is not None]
            cells.append(fmt.format(float(np.mean(v))) if v else "–")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
