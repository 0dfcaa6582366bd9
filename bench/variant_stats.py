"""What the benchmarks that score inference variants over several checkpoints on one tile set share.

Each such benchmark loads every checkpoint into the bundle's network in turn and runs it over every labelled tile
(:func:`checkpoint_tiles`), then writes one row per (checkpoint, tile, variant) with per-tile metrics; a variant is
summarised by the mean and std over checkpoints of its per-checkpoint means, and compared with the reference variant
by a Wilcoxon signed-rank test over tiles (each tile's scores averaged over the checkpoints; :func:`summarise_variants`,
:func:`variants_markdown`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench.signed_rank import signed_rank_p
from labelfree.core.imageio import find_label, list_images, load_instance_map

__all__ = ["checkpoint_list", "checkpoint_tiles", "metric_cells", "summarise_variants", "variants_markdown"]

#: the Markdown column titles of the metrics the variant benchmarks score
METRIC_TITLES = {"dice": "Dice", "aji": "AJI", "pq": "PQ"}


def checkpoint_list(ckpts: str | Sequence[str]) -> list[str | None]:
    """``"A,B"`` or ``("A", "B")`` → ``["A", "B"]``; nothing given → ``[None]``, the bundle's shipped weights."""
    return [c for c in (ckpts.split(",") if isinstance(ckpts, str) else ckpts) if c] or [None]


def checkpoint_tiles(
    network: torch.nn.Module,
    names: Sequence[str | None],
    shipped: str | Path,
    images: str | Path,
    labels: str | Path,
    preprocessing: Callable[[dict], dict],
) -> Iterator[tuple[int, Path, np.ndarray, dict]]:
    """For every checkpoint of ``names`` (:func:`checkpoint_list`; ``None``: the ``shipped`` weights), loaded into
    ``network`` in eval mode, and every tile of ``images``: ``(checkpoint index, tile path, its instance labels, the
    bundle's ``preprocessing`` of it)``. The labels are for scoring only."""
    for i, ckpt in enumerate(names):
        weights = Path(ckpt) if ckpt else Path(shipped)
        network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        network.eval()
        for path in tqdm(list_images(images), desc=f"checkpoint {i}", unit="image"):
            yield i, path, load_instance_map(find_label(labels, path)), preprocessing({"image": str(path)})


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
            out[variant][m]["p"] = signed_rank_p(b, a)
    return out


def metric_cells(summary: dict, metrics: Sequence[str]) -> list[str]:
    """One variant's Markdown cells: ``mean ± std`` per metric, with ``(p …)`` where it was tested."""
    return [
        f"{summary[m]['mean']:.3f} ± {summary[m]['std']:.3f}"
        + (f" (p {summary[m]['p']:.2g})" if "p" in summary[m] else "")
        for m in metrics
    ]


def variants_markdown(title: str, command: str, n_checkpoints: int, summary: dict, metrics: Sequence[str]) -> str:
    """The report of a variant benchmark: ``title``, the ``command`` that made it, how it was summarised, and one
    table row per variant of ``summary`` (:func:`summarise_variants`)."""
    lines = [
        f"# {title}",
        "",
        f"`{command}`; {n_checkpoints} checkpoint(s); mean ± std over checkpoints of the per-tile means; p: Wilcoxon "
        "signed-rank over tiles (scores averaged over checkpoints) against the default; labels only to score.",
        "",
        "| variant | " + " | ".join(METRIC_TITLES.get(m, m) for m in metrics) + " |",
        "|---" * (len(metrics) + 1) + "|",
    ]
    lines += [f"| {variant} | {' | '.join(metric_cells(v, metrics))} |" for variant, v in summary.items()]
    return "\n".join(lines) + "\n"
