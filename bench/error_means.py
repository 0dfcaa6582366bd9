"""Error analyses of several runs (one per training seed) averaged: the per-run means of ``bench.error_analysis``.

Each argument matched by ``--reports`` is an ``error_analysis.json`` written by ``python -m bench.error_analysis`` for
one run; the table has one row per run and their mean (labels were read by the analysis only to analyse).

    python -m bench.error_means --out bench/results/v6/recipe/errors/monuseg/contact_width2 \\
        --reports "bench/results/v6/recipe/errors/monuseg/contact_width2/seed*/error_analysis.json"
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import fire
import numpy as np

from bench.harness.errors import ERROR_COLUMNS
from labelfree.core.imageio import save_text


def run(reports: str, out: str | None = None) -> dict[str, float]:
    """Print (and with ``out`` write ``error_means.md``/``.json``) each run's mean errors and their mean over runs."""
    files = sorted(glob.glob(reports))
    if not files:
        raise FileNotFoundError(f"no error analysis matches {reports}")
    runs = {str(Path(f).parent): json.loads(Path(f).read_text(encoding="utf-8"))["mean"] for f in files}
    # analyses written before a column existed lack it: the table keeps the columns every run has
    columns = [c for c in ERROR_COLUMNS if all(c in r for r in runs.values())]
    mean = {c: float(np.mean([r[c] for r in runs.values()])) for c in columns}
    lines = [
        f"# Error analyses averaged over {len(runs)} run(s): `{reports}`",
        "",
        "| run | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, r in runs.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.3f}" for c in columns) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{mean[c]:.3f}**" for c in columns) + " |")
    report = "\n".join(lines) + "\n"
    print(report)
    if out is not None:
        save_text(Path(out) / "error_means.md", report)
        save_text(
            Path(out) / "error_means.json", json.dumps({"reports": reports, "runs": runs, "mean": mean}, indent=2)
        )
    return mean


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
