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
from collections.abc import Sequence
from pathlib import Path

import fire
import numpy as np

from bench.report_files import save_report
from bench.stated_resolution import magnifications

METRICS = ("dice", "aji", "pq")


def group_means(rows: Sequence[dict], mags: dict[str, float]) -> dict[str, dict[str, float]]:
    """Mean of :data:`METRICS` over ``rows`` (harness ``results.csv`` rows of one method and seed) for each
    magnification (keys ``"20x"``, ``"40x"``, ...) and for all of them (``"all"``), with the tile count ``"n"``.

    Raises:
        ValueError: a tile has no magnification in ``mags``.
    """
    missing = sorted({r["image"] for r in rows} - set(mags))
    if missing:
        raise ValueError(f"no magnification for {', '.join(missing)}")
    groups: dict[str, list[dict]] = {"all": list(rows)}
    for r in rows:
        groups.setdefault(f"{mags[r['image']]:g}x", []).append(r)
    return {
        g: {"n": len(rs), **{m: float(np.mean([float(r[m]) for r in rs])) for m in METRICS}}
        for g, rs in sorted(groups.items(), key=lambda kv: (kv[0] == "all", kv[0]))
    }


def run(runs: str | Sequence[str], per_image: str, method: str, out: str | None = None, seed: int = 0) -> dict:
    """Group each run folder's ``results.csv`` (rows of ``method``, ``seed``) by magnification; print the table and,
    with ``out``, write ``by_magnification.{md,json}`` there."""
    folders = [Path(r) for r in (runs.split(",") if isinstance(runs, str) else runs) if r]
    mags = magnifications(per_image)
    result = {}
    for folder in folders:
        with open(folder / "results.csv") as fh:
            rows = [r for r in csv.DictReader(fh) if r["method"] == method and int(r["seed"]) == seed]
        if not rows:
            raise ValueError(f"{folder / 'results.csv'} has no rows of {method}, seed {seed}")
        result[str(folder)] = group_means(rows, mags)
    groups = list(next(iter(result.values())))
    lines = [
        f"`{method}`, mean per tile, Dice / AJI / PQ, tiles grouped by `{per_image}` (labels only to score):",
        "",
        "| run | " + " | ".join(f"{g} ({result[str(folders[0])][g]['n']} tiles)" for g in groups) + " |",
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
