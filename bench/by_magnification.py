"""Table: a method's per-tile harness scores grouped by each tile's magnification, for several runs side by side.

Issue 17 asks that CPM-15 figures tell its 20× tiles from its 40× ones. The comparison harness already writes every
tile's scores (``results.csv``); this groups them by the data set's own metadata (``per_image.csv``'s
``magnification``, what a lab knows about its scans, not a label) and prints the mean Dice / AJI / PQ per group and
run. Nothing is run again; labels were read by the harness only to score.

    python -m bench.by_magnification --runs bench/compare_v13/cpm15,bench/compare_v14/cpm15 \\
        --per_image ../shared/data/cpm15/per_image.csv --method ssimnet_shipped --out bench/compare_v14/cpm15
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import fire
import numpy as np

from bench.harness.results_csv import read_results_csv
from bench.report_files import save_report

METRICS = ("dice", "aji", "pq")


def magnifications(per_image: str | os.PathLike) -> dict[str, float]:
    """``{tile stem: magnification}`` from a CSV with columns ``name`` and ``magnification`` (``20x``, ``40``)."""
    with open(per_image, newline="") as fh:
        return {row["name"]: float(row["magnification"].lower().rstrip("x")) for row in csv.DictReader(fh)}


def tile_magnifications(per_image: str | os.PathLike, tiles: Iterable[str | os.PathLike]) -> dict[str, float]:
    """``{tile stem: magnification}`` of ``tiles`` (file names or stems) from ``per_image`` (:func:`magnifications`).

    Raises:
        ValueError: naming the tiles the CSV gives no magnification for.
    """
    mags = magnifications(per_image)
    missing = [Path(t).name for t in tiles if Path(t).stem not in mags]
    if missing:
        raise ValueError(f"no magnification in {per_image} for {', '.join(missing)}")
    return {Path(t).stem: mags[Path(t).stem] for t in tiles}


def um_per_pixel(magnification: float) -> float:
    """Microns per pixel of a scan at ``magnification`` (0.25 at 40×, 0.5 at 20×: the network's training scale and
    what ``input_mpp`` states)."""
    return 10.0 / magnification


def tile_groups(stems: Iterable[str], mags: Mapping[str, float]) -> dict[str, list[str]]:
    """``stems`` by magnification, lowest first (keys ``"20x"``, ``"40x"``, ...), then all of them (``"all"``);
    each group's stems sorted.

    Raises:
        ValueError: a tile has no magnification in ``mags``.
    """
    stems = sorted(stems)
    missing = [s for s in stems if s not in mags]
    if missing:
        raise ValueError(f"no magnification for {', '.join(missing)}")
    groups = {f"{m:g}x": [s for s in stems if mags[s] == m] for m in sorted({mags[s] for s in stems})}
    return groups | {"all": stems}


def group_means(
    scores: Mapping[str, Mapping[str, float]], groups: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, float]]:
    """Mean of :data:`METRICS` over each group's tiles; ``scores`` maps a tile stem to its scores."""
    return {g: {k: float(np.mean([scores[s][k] for s in stems])) for k in METRICS} for g, stems in groups.items()}


def run(runs: str | Sequence[str], per_image: str, method: str, out: str | None = None, seed: int = 0) -> dict:
    """Group each run folder's ``results.csv`` (rows of ``method``, ``seed``) by magnification; print the table and,
    with ``out``, write ``by_magnification.{md,json}`` there. A run written ``FOLDER@NAME`` reads the rows of method
    ``NAME`` there instead (reports whose method is named after its arm)."""
    entries = [r for r in (runs.split(",") if isinstance(runs, str) else runs) if r]
    mags = magnifications(per_image)
    result = {}
    for entry in entries:
        folder_name, _, arm_method = entry.partition("@")
        folder, name = Path(folder_name), arm_method or method
        scores = read_results_csv(folder / "results.csv", METRICS, seed=seed).get(name, {})
        if not scores:
            raise ValueError(f"{folder / 'results.csv'} has no rows of {name}, seed {seed}")
        groups = tile_groups(scores, mags)
        means = group_means(scores, groups)
        key = entry if "@" in entry else str(folder)
        result[key] = {g: {"n": len(stems), **means[g]} for g, stems in groups.items()}
    groups = list(next(iter(result.values())))
    lines = [
        f"`{method}`, mean per tile, Dice / AJI / PQ, tiles grouped by `{per_image}` (labels only to score):",
        "",
        "| run | " + " | ".join(f"{g} ({next(iter(result.values()))[g]['n']} tiles)" for g in groups) + " |",
        "|---" * (len(groups) + 1) + "|",
    ]
    for name, means in result.items():
        cells = [" / ".join(f"{means[g][m]:.3f}" for m in METRICS) if g in means else "" for g in groups]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    if out:
        save_report(out, "by_magnification", result, "\n".join(lines) + "\n")
    else:
        print("\n".join(lines))
    return result


if __name__ == "__main__":
    fire.Fire(run)
