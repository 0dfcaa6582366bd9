"""Where the errors of a segmentation run lie: at nucleus borders, in whole missed or extra objects, or in splitting.

For every tile of a prediction folder (``<stem>_inst.tif`` as written by the bundles) against its instance labels:

* area ratio: predicted nucleus area / labelled nucleus area (1 = right amount of nucleus, per tile);
* false-positive and false-negative pixel fractions, and the share of each that lies within ``border`` px of the
  other mask (a border disagreement rather than a whole object found or missed);
* AJI of the prediction, and AJI when the same watershed splits the *labelled* foreground: the second is what the
  instance step reaches on a perfect foreground, so the difference is the part of the AJI gap owed to the mask.

Labels are read only to analyse; nothing here feeds back into a method. Writes ``error_analysis.json`` and
``error_analysis.md`` to ``--out``.

    python -m bench.error_analysis --pred bench/runs/compare/ssimnet/seed0/pred \
        --labels ../shared/data/monuseg/train/labels --out bench/results
"""

from __future__ import annotations

import json
from pathlib import Path

import fire
import numpy as np
from tqdm import tqdm

from bench.harness.errors import ERROR_COLUMNS, tile_errors
from labelfree.core.imageio import find_label, load_instance_map, save_text


def run(pred: str, labels: str, out: str = "bench/results", border: float = 2.0) -> None:
    """Analyse every ``*_inst.tif`` in ``pred``; print the means and write the per-tile table."""
    files = sorted(Path(pred).glob("*_inst.tif"))
    if not files:
        raise FileNotFoundError(f"no <stem>_inst.tif in {pred}")
    per_tile = {}
    for f in tqdm(files, desc="tiles", unit="tile"):
        stem = f.name[: -len("_inst.tif")]
        gt = load_instance_map(find_label(labels, stem + ".tif"))
        per_tile[stem] = tile_errors(gt, load_instance_map(f), border)
    mean = {c: float(np.mean([t[c] for t in per_tile.values()])) for c in ERROR_COLUMNS}
    result = {"pred": pred, "labels": labels, "border_px": border, "mean": mean, "per_tile": per_tile}
    outdir = Path(out)
    save_text(outdir / "error_analysis.json", json.dumps(result, indent=2))
    lines = [
        f"# Error analysis of `{pred}`",
        "",
        f"`python -m bench.error_analysis --pred {pred} --labels {labels} --out {out}`  ",
        f"Border = within {border:g} px of the other mask. Tiles sorted by area ratio.",
        "",
        "| tile | " + " | ".join(ERROR_COLUMNS) + " |",
        "|---|" + "---|" * len(ERROR_COLUMNS),
    ]
    for stem, t in sorted(per_tile.items(), key=lambda kv: kv[1]["area_ratio"]):
        lines.append(f"| {stem} | " + " | ".join(f"{t[c]:.3f}" for c in ERROR_COLUMNS) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{mean[c]:.3f}**" for c in ERROR_COLUMNS) + " |")
    save_text(outdir / "error_analysis.md", "\n".join(lines) + "\n")
    for c in ERROR_COLUMNS:
        print(f"{c:20s} {mean[c]:.3f}")


if __name__ == "__main__":
    fire.Fire(run)
