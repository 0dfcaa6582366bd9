"""Spread over training seeds: one harness report per seed's checkpoint → a per-seed table with mean ± sample std.

Each argument of ``--reports`` is a folder written by ``python -m bench.harness compare`` for one seed's checkpoint
(its ``summary.json``); the seed is read from the folder's name (``seed<N>``). Labels were read by the harness only to
score.

    python -m bench.seed_spread --reports "bench/results/v3/seeds/resplit/monuseg/seed*" --method ssimnet_shipped \
        --out bench/results/v3/seeds/resplit/monuseg
"""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path

import fire
import numpy as np

from labelfree.core.imageio import save_text

METRICS = ("dice", "aji", "pq")


def spread(reports: str, method: str = "ssimnet_shipped", out: str | None = None) -> None:
    """Print (and with ``out`` write ``seed_spread.md``/``.json``) each seed's Dice / AJI / PQ and their mean ± std."""
    # report folders only: the table written next to them (seed_spread.md) matches the same pattern
    folders = [f for f in glob.glob(reports) if Path(f).is_dir() and re.search(r"seed(\d+)$", f.rstrip("/"))]
    folders.sort(key=lambda f: int(re.search(r"seed(\d+)$", f.rstrip("/")).group(1)))
    if not folders:
        raise SystemExit(f"no report folder matches {reports}")
    rows = {}
    for folder in folders:
        summary = json.loads((Path(folder) / "summary.json").read_text())["metrics"][method]
        rows[int(re.search(r"seed(\d+)$", folder.rstrip("/")).group(1))] = {
            k: float(summary[k]["mean"]) for k in METRICS
        }
    values = np.array([[r[k] for k in METRICS] for r in rows.values()])
    mean, std = values.mean(axis=0), values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(len(METRICS))
    lines = [f"| seed | {' / '.join(METRICS)} |", "|---|---|"]
    lines += [f"| {s} | " + " / ".join(f"{r[k]:.3f}" for k in METRICS) + " |" for s, r in rows.items()]
    lines.append(
        f"| mean ± std ({len(rows)} seeds) | " + " / ".join(f"{m:.3f} ± {d:.3f}" for m, d in zip(mean, std)) + " |"
    )
    table = "\n".join(lines) + "\n"
    print(table)
    if out:
        save_text(Path(out) / "seed_spread.md", f'`python -m bench.seed_spread --reports "{reports}"`\n\n' + table)
        report = {"seeds": rows, "mean": dict(zip(METRICS, mean.tolist())), "std": dict(zip(METRICS, std.tolist()))}
        save_text(Path(out) / "seed_spread.json", json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    fire.Fire(spread)
