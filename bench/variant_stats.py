"""Summaries shared by the benchmarks that score inference variants over several checkpoints on one tile set.

Each such benchmark writes one row per (checkpoint, tile, variant) with per-tile metrics; a variant is summarised by
the mean and std over checkpoints of its per-checkpoint means, and compared with the reference variant by a Wilcoxon
signed-rank test over tiles (each tile's scores averaged over the checkpoints).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import wilcoxon

__all__ = ["checkpoint_list", "metric_cells", "summarise_variants"]


def checkpoint_list(ckpts: str | Sequence[str]) -> list[str | None]:
    """``"A,B"`` or ``("A", "B")`` → ``["A", "B"]``; nothing given → ``[None]``, the bundle's shipped weights."""
    return [c for c in (ckpts.split(",") if isinstance(ckpts, str) else ckpts) if c] or [None]


def summarise_variants(
    rows: list[dict], key: str, variants: Sequence[str], metrics: Sequence[str], reference: str = "default"
) -> dict:
    """Per variant and metric: ``mean``, ``std`` and ``per_checkpoint`` means; every variant but ``reference`` also
    ``p``, the Wilcoxon signed-rank p of its per-tile means against the reference's (1 where they are equal).

    Args:
        rows: dicts with ``checkpoint``, ``image``, ``key`` (the variant's name) and every metric.
        key: the row field that names the variant.
        variants: the variants to summarise, in order.
        metrics: the metric fields.
        reference: the variant the others are tested against.
    """
    out, per_tile = {}, {}
    for variant in variants:
        sel = [r for r in rows if r[key] == variant]
        ckpts, stems = sorted({r["checkpoint"] for r in sel}), sorted({r["image"] for r in sel})
        means = {m: [float(np.mean([r[m] for r in sel if r["checkpoint"] == c])) for c in ckpts] for m in metrics}
        out[variant] = {
            m: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_checkpoint": v} for m, v in means.items()
        }
        per_tile[variant] = {m: [np.mean([r[m] for r in sel if r["image"] == s]) for s in stems] for m in metrics}
    for variant in variants:
        if variant == reference:
            continue
        for m in metrics:
            a, b = per_tile[reference][m], per_tile[variant][m]
            out[variant][m]["p"] = float(wilcoxon(b, a).pvalue) if np.any(np.subtract(a, b)) else 1.0
    return out


def metric_cells(summary: dict, metrics: Sequence[str]) -> list[str]:
    """One variant's Markdown cells: ``mean ± std`` per metric, with ``(p …)`` where it was tested."""
    return [
        f"{summary[m]['mean']:.3f} ± {summary[m]['std']:.3f}"
        + (f" (p {summary[m]['p']:.2g})" if "p" in summary[m] else "")
        for m in metrics
    ]
