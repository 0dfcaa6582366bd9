"""Benchmark: the instance step's basins climbed (:func:`labelfree.transforms.dynamics.ascent_basins`) against flooded
(``skimage.segmentation.watershed`` from every regional maximum, what ``dynamics_watershed`` did before).

On the shipped SSimNet's nucleus probability of each tile (the bundle's network, float32, computed once), the two
are timed in turn on the same relief, ``repeats`` times, and compared: the basins (share of foreground pixels with the
same label), then the whole instance step (:func:`labelfree.transforms.instances.instances_from_map` with the
bundle's settings, re-split included) with each, its seconds and how far its instance maps move (AJI of one against the
other, object counts). No labels are read.

    python -m bench.basins_speed --images ../shared/data/monuseg/train/images --out bench/results/speed/basins/monuseg
"""

from __future__ import annotations

import time
from pathlib import Path
from unittest import mock

import fire
import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.morphology import local_maxima
from skimage.segmentation import watershed

import labelfree.transforms.dynamics as dynamics
from bench.marker_depth import nucleus_probabilities
from bench.report_files import save_report
from labelfree.core.metrics import aji
from labelfree.transforms.instances import foreground_relief, instances_from_map

#: the SSimNet bundle's instance settings (configs/inference.json)
SETTINGS = {"threshold": 0.25, "min_size": 30, "h": 2.0, "resplit_irregular": True, "min_mean_prob": 0.5}


def flooded_basins(relief: np.ndarray, mask: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """The basins as ``dynamics_watershed`` made them before: one flooding from every marked maximum."""
    return watershed(-relief, markers=markers, mask=mask, connectivity=1)


def _seconds(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def tile_row(prob: np.ndarray, repeats: int) -> dict:
    """Seconds and agreement of the two basin methods on one tile's probability."""
    fg, relief = foreground_relief(prob, SETTINGS["threshold"], SETTINGS["min_size"])
    markers, _ = ndi.label(local_maxima(relief, connectivity=2, allow_borders=True) & fg, structure=np.ones((3, 3)))
    t_flood, flood = _seconds(lambda: flooded_basins(relief, fg, markers), repeats)
    t_climb, climb = _seconds(lambda: dynamics.ascent_basins(relief, fg, markers), repeats)
    with mock.patch.object(dynamics, "ascent_basins", flooded_basins):
        t_old, old = _seconds(lambda: instances_from_map(prob, **SETTINGS), repeats)
    t_new, new = _seconds(lambda: instances_from_map(prob, **SETTINGS), repeats)
    return {
        "basins_flooded_s": t_flood,
        "basins_climbed_s": t_climb,
        "basins_same_label": float((flood == climb)[fg].mean()) if fg.any() else 1.0,
        "instances_flooded_s": t_old,
        "instances_climbed_s": t_new,
        "identical": bool(np.array_equal(old, new)),
        "aji_between": float(aji(old, new)),
        "objects_flooded": int(old.max()),
        "objects_climbed": int(new.max()),
    }


def run(images: str, out: str, repeats: int = 3, threads: int = 2) -> dict:
    """Time and compare both basin methods on every tile of ``images``; write ``basins_speed.{json,md}``."""
    torch.set_num_threads(threads)
    probs = nucleus_probabilities(images)
    rows = {stem: tile_row(p, repeats) for stem, p in probs.items()}
    keys = next(iter(rows.values())).keys()
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in keys}
    result = {"images": images, "repeats": repeats, "threads": threads, "tiles": rows, "mean": mean}
    md = [
        f"Basins climbed against flooded, {len(rows)} tiles of `{images}` (the shipped SSimNet's probability, the "
        f"bundle's instance settings; best of {repeats} per tile; no labels; `python -m bench.basins_speed`):",
        "",
        "| step | flooded s / tile | climbed s / tile | ratio |",
        "|---|---|---|---|",
        f"| basins alone | {mean['basins_flooded_s']:.4f} | {mean['basins_climbed_s']:.4f} | "
        f"{mean['basins_flooded_s'] / mean['basins_climbed_s']:.2f}× |",
        f"| whole instance step (`instances_from_map`) | {mean['instances_flooded_s']:.4f} | "
        f"{mean['instances_climbed_s']:.4f} | {mean['instances_flooded_s'] / mean['instances_climbed_s']:.2f}× |",
        "",
        f"- Foreground pixels in the same basin: {mean['basins_same_label']:.4f} on average, "
        f"{min(r['basins_same_label'] for r in rows.values()):.4f} at worst.",
        f"- Instance maps: identical on {sum(r['identical'] for r in rows.values())} of {len(rows)} tiles; AJI of one "
        f"against the other {mean['aji_between']:.4f} on average, {min(r['aji_between'] for r in rows.values()):.4f} "
        f"at worst; objects per tile {mean['objects_flooded']:.1f} flooded, {mean['objects_climbed']:.1f} climbed.",
        "",
    ]
    save_report(Path(out), "basins_speed", result, "\n".join(md))
    return result


if __name__ == "__main__":
    fire.Fire(run)
