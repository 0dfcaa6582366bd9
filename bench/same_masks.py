"""Benchmark check: do two runs give the same instance maps?

A speed change is kept only at equal masks. This compares the ``<stem>_inst.tif`` files of two prediction folders (each
searched recursively, e.g. two ``--runs`` folders of the comparison harness) tile by tile: whether the instance maps
are identical, and otherwise how many pixels change between nucleus and background and how many instances each has.

    python -m bench.same_masks --a RUNS_A --b RUNS_B --out bench/results/speed/onnxruntime/same_masks_monuseg.md
"""

from __future__ import annotations

from pathlib import Path

import fire
import numpy as np

from bench.report_files import print_and_save
from labelfree.core.imageio import load_instance_map


def _instance_maps(folder: str) -> dict[str, Path]:
    found = {p.name: p for p in sorted(Path(folder).rglob("*_inst.tif"))}
    if not found:
        raise SystemExit(f"no *_inst.tif under {folder}")
    return found


def compare(a: str, b: str) -> list[dict]:
    """Per tile present in both folders: ``identical``, ``mask_pixels_changed``, ``instances_a``, ``instances_b``."""
    maps_a, maps_b = _instance_maps(a), _instance_maps(b)
    missing = sorted(set(maps_a) ^ set(maps_b))
    if missing:
        raise SystemExit(f"tiles in one folder only: {', '.join(missing)}")
    rows = []
    for name in sorted(maps_a):
        x, y = load_instance_map(maps_a[name]), load_instance_map(maps_b[name])
        rows.append(
            {
                "tile": name.removesuffix("_inst.tif"),
                "identical": bool(np.array_equal(x, y)),
                "mask_pixels_changed": int(((x > 0) != (y > 0)).sum()),
                "instances_a": int(len(np.unique(x[x > 0]))),
                "instances_b": int(len(np.unique(y[y > 0]))),
            }
        )
    return rows


def run(a: str, b: str, out: str | None = None) -> str:
    """Compare the instance maps under ``a`` and ``b``; print (and write to ``out``) a markdown summary."""
    rows = compare(a, b)
    same = sum(r["identical"] for r in rows)
    lines = [
        f"Instance maps under `{a}` against `{b}`: {same} of {len(rows)} tiles identical; "
        f"largest mask difference {max(r['mask_pixels_changed'] for r in rows)} pixels.",
        "",
    ]
    differing = [r for r in rows if not r["identical"]]
    if differing:
        lines += ["| tile | mask pixels changed | instances (a / b) |", "|---|---|---|"]
        lines += [
            f"| {r['tile']} | {r['mask_pixels_changed']} | {r['instances_a']} / {r['instances_b']} |" for r in differing
        ]
    return print_and_save("\n".join(lines) + "\n", out)


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
