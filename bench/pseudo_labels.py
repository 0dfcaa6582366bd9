"""Benchmark: label-free pseudo labels against the classic Otsu-haematoxylin + watershed pipeline.

Runs every method on every image of a labelled folder, times the segmentation alone (reading and scoring excluded),
scores it with the project's metrics and writes ``pseudo_labels.json`` (per image and summary) and
``pseudo_labels.md`` (table) to ``--out``. Labels are read only to score.

    python -m bench.pseudo_labels --images ../shared/data/monuseg/train/images \
        --labels ../shared/data/monuseg/train/labels --out bench/results
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import fire
import numpy as np
import torch
from tqdm import tqdm

from bench.harness.baselines import otsu_haematoxylin_watershed
from labelfree.core.imageio import list_images, load_instance_map, load_rgb, save_text
from labelfree.core.metrics import instance_scores
from labelfree.transforms.pseudolabel import PseudoLabel

METHODS = {
    "pseudo_labels": "ours: Vahadane → FCM (k = 2 or 3 per tile, by object solidity) → contour on membership → "
    "watershed",
    "pseudo_labels_k3": "ours before 0.2.0: Vahadane → FCM (k=3) → contour on membership → watershed",
    "pseudo_labels_paper": "as the SSimNet paper: Vahadane → FCM (k=2) → contour on L* → watershed",
    "otsu_ws": "classic: Otsu on rgb2hed haematoxylin → same watershed",
}
REPORTED = ("dice", "precision", "recall", "aji", "aji_plus", "pq")


def _segmenters(seed: int):
    ours = PseudoLabel(seed=seed)
    k3 = PseudoLabel(n_clusters=3, seed=seed)
    paper = PseudoLabel(n_clusters=2, contour_on="lightness", seed=seed)
    return {
        "pseudo_labels": lambda rgb: ours(rgb.transpose(2, 0, 1)).instances,
        "pseudo_labels_k3": lambda rgb: k3(rgb.transpose(2, 0, 1)).instances,
        "pseudo_labels_paper": lambda rgb: paper(rgb.transpose(2, 0, 1)).instances,
        "otsu_ws": otsu_haematoxylin_watershed,
    }


def run(images: str, labels: str, out: str = "bench/results", seed: int = 0, threads: int = 2) -> dict:
    """Benchmark every method on ``images`` scored against ``labels`` (files named like the images)."""
    torch.set_num_threads(threads)
    files = list_images(images)
    segs = _segmenters(seed)
    rows = []
    for path in tqdm(files, desc="images", unit="img"):
        rgb = load_rgb(path)
        gt = load_instance_map(Path(labels) / path.name)
        for name, seg in segs.items():
            t0 = time.perf_counter()
            inst = seg(rgb)
            secs = time.perf_counter() - t0
            rows.append({"method": name, "image": path.stem, "seconds": secs, **instance_scores(gt, inst)})
    summary = {}
    for name in segs:
        r = [x for x in rows if x["method"] == name]
        summary[name] = {
            "description": METHODS[name],
            "median_seconds": statistics.median(x["seconds"] for x in r),
            **{m: float(np.mean([x[m] for x in r])) for m in REPORTED},
            **{f"{m}_std_over_images": float(np.std([x[m] for x in r])) for m in ("dice", "aji")},
        }
    result = {
        "command": "python -m bench.pseudo_labels --images {} --labels {} --out {} --seed {} --threads {}".format(
            images, labels, out, seed, threads
        ),
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {threads}, no GPU",
        "n_images": len(files),
        "summary": summary,
        "per_image": rows,
    }
    outdir = Path(out)
    save_text(outdir / "pseudo_labels.json", json.dumps(result, indent=2))
    lines = [
        f"# Pseudo-label benchmark ({len(files)} images, {result['date']})",
        "",
        f"`{result['command']}`  ",
        f"Machine: {result['machine']}. Means over images; seconds = median per image, segmentation only.",
        "",
        "| method | s/image | Dice | precision | recall | AJI | AJI+ | PQ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {s['median_seconds']:.2f} | {s['dice']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} "
            f"| {s['aji']:.3f} | {s['aji_plus']:.3f} | {s['pq']:.3f} |"
        )
    lines += ["", *[f"- `{k}`: {v}" for k, v in METHODS.items()], ""]
    save_text(outdir / "pseudo_labels.md", "\n".join(lines))
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    fire.Fire(run)
