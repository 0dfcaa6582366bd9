"""Benchmark: tiles of unknown resolution segmented again at 2× when their nuclei look small (issues 17 and 14).

The networks were trained at 40× (0.25 µm per pixel). A 20× scan shows its nuclei at half the width and a quarter of
the area, and the instance step's pixel constants (smallest object, marker depth) are meant for the training scale; a
user who states the resolution (SSimNet's ``--input_mpp 0.5``) gets the tile resampled to the model's scale, one who
does not gets it as it is. The variant ``auto_scale`` decides per tile without being told, from what the network
itself finds:

1. the default inference at the tile's own pixels;
2. ``m``, the median area of the objects it keeps, against ``r``, the median over the checkpoint's training tiles
   (``reference_images``) of each tile's ``m`` under the same inference (no labels);
3. a tile with at least 10 objects and ``m < r / 2`` (nearer, in log area, to the quarter area of a scan at half the
   magnification than to the training area; :func:`labelfree.engines.rescale.has_small_nuclei`) is resampled ×2,
   segmented again, and the instances brought back to its own pixels: what SSimNet's ``auto_scale``
   (:class:`labelfree.engines.rescale.RescaleSmallNucleid`) does, and for SSimNet the same as ``--input_mpp 0.5``.

``auto_scale_split`` (a second arm, written after ``auto_scale``'s scores) re-segments the same tiles but keeps the
native mask and lets the 2x objects only cut it (:func:`split_by`); ``auto_scale_convex`` (a third, written after
both) keeps the 2x result only where its objects are clearly more convex than the native ones (the pseudo labels' rule
for choosing between two segmentations of a tile, ``SOLIDITY_MARGIN``).

The rule and its constants were written before any score (``bench/results/v6/auto_scale/rule.txt``). Each tile goes
through the bundle's own tile path (:class:`labelfree.engines.slides.BundleTileSegmenter`: its preprocessing, views,
inferer and post-processing, with ``auto_scale`` off), so ``default`` is the bundle's default output. Labels are read
only to score.

    python -m bench.auto_scale --images ../shared/data/cpm15/train/images --labels ../shared/data/cpm15/train/labels \\
        --reference_images ../shared/data/monuseg/train/images --ckpts CKPT0,CKPT1,... \\
        --out bench/results/v6/auto_scale/cpm15
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import fire
import numpy as np
import torch
from scipy import ndimage as ndi
from tqdm import tqdm

from bench.report_files import save_report
from bench.variant_stats import checkpoint_list, summarise_variants, variants_markdown
from labelfree.core.imageio import find_label, list_images, load_instance_map, load_rgb
from labelfree.core.metrics import instance_scores
from labelfree.engines.rescale import has_small_nuclei, reference_object_area
from labelfree.engines.slides import BundleTileSegmenter
from labelfree.transforms.instances import median_object_area
from labelfree.transforms.pseudolabel import SOLIDITY_MARGIN, mean_solidity
from labelfree.transforms.scale import MatchSpatialSize, resample_rgb

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("default", "auto_scale", "auto_scale_split", "auto_scale_convex")
METRICS = ("dice", "aji", "pq", "precision", "recall")
#: the resampling of a tile segmented again (a 20x scan brought to 40x)
UPSCALE = 2.0


def segment(seg: BundleTileSegmenter, rgb: np.ndarray, factor: float = 1.0) -> np.ndarray:
    """A bundle's tile path (its inference with auto_scale off) on ``rgb`` resampled by ``factor`` (antialiased
    bilinear, as ``--input_mpp`` resamples); the instance map brought back to ``rgb``'s pixels (nearest, ids
    renumbered)."""
    if factor == 1:
        return seg(rgb)
    h, w = rgb.shape[:2]
    inst = seg(resample_rgb(rgb, (round(w * factor), round(h * factor))))
    return np.asarray(MatchSpatialSize((h, w), True)(torch.as_tensor(inst[None])))[0]


def segmenters(bundle: str, names: list) -> list[BundleTileSegmenter]:
    """One tile segmenter per checkpoint (``None``: the bundle's shipped one), auto_scale off."""
    root = REPO / "bundles" / bundle
    return [
        BundleTileSegmenter(root, device="cpu", overrides={"auto_scale": False} | ({"ckpt_path": c} if c else {}))
        for c in names
    ]


def split_by(native: np.ndarray, finer: np.ndarray) -> np.ndarray:
    """``native``'s objects, each cut where ``finer``'s objects cut it: every pixel of a native object takes the id of
    the nearest ``finer`` object inside that native object (Euclidean); a native object no ``finer`` object touches
    stays whole. Ids ``1..n``; the foreground is ``native``'s."""
    out, n = np.zeros(native.shape, np.int32), 0
    for i, box in enumerate(ndi.find_objects(native), start=1):
        if box is None:
            continue
        obj = native[box] == i
        marks = np.where(obj, finer[box], 0)
        ids = np.unique(marks[marks > 0])
        if ids.size <= 1:
            n += 1
            out[box][obj] = n
            continue
        _, (iy, ix) = ndi.distance_transform_edt(marks == 0, return_indices=True)
        nearest = marks[iy, ix]
        for j in ids:
            n += 1
            out[box][obj & (nearest == j)] = n
    return out


def reference_areas(segs: list[BundleTileSegmenter], images: str | Path) -> list[float]:
    """Per checkpoint: the median over ``images`` (its training tiles) of each tile's median object area."""
    paths = list_images(images)
    return [
        reference_object_area(seg, (load_rgb(p) for p in tqdm(paths, desc=f"reference {i}", unit="tile")))
        for i, seg in enumerate(segs)
    ]


def run(
    images: str,
    labels: str,
    out: str,
    reference_images: str,
    ckpts: str | tuple = "",
    bundle: str = "ssimnet",
    threads: int = 2,
) -> dict:
    """Score ``default`` and ``auto_scale`` of ``bundle`` for every checkpoint; write ``auto_scale.{json,md}``."""
    torch.set_num_threads(threads)
    names = checkpoint_list(ckpts)
    segs = segmenters(bundle, names)
    refs = reference_areas(segs, reference_images)
    rows, switched = [], {}
    for i, seg in enumerate(segs):
        for path in tqdm(list_images(images), desc=f"checkpoint {i}", unit="tile"):
            rgb, gt = load_rgb(path), load_instance_map(find_label(labels, path))
            inst = segment(seg, rgb)
            median = median_object_area(inst)[0]
            variants = {"default": inst, "auto_scale": inst, "auto_scale_split": inst, "auto_scale_convex": inst}
            if has_small_nuclei(inst, refs[i]):
                variants["auto_scale"] = segment(seg, rgb, UPSCALE)
                variants["auto_scale_split"] = split_by(inst, variants["auto_scale"])
                if mean_solidity(variants["auto_scale"]) > mean_solidity(inst) + SOLIDITY_MARGIN:
                    variants["auto_scale_convex"] = variants["auto_scale"]
                switched.setdefault(i, []).append(path.stem)
            for variant, objects in variants.items():
                s = instance_scores(gt, objects)
                row = {"checkpoint": i, "image": path.stem, "variant": variant, "median_area": median}
                rows.append(row | {m: s[m] for m in METRICS})
    result = {"rows": rows, "checkpoints": [str(c or "shipped") for c in names], "date": date.today().isoformat()}
    result |= {"reference_areas": refs, "switched": {str(k): v for k, v in switched.items()}}
    result["summary"] = summarise_variants(rows, "variant", VARIANTS, METRICS)
    command = (
        f"python -m bench.auto_scale --images {images} --labels {labels} --reference_images {reference_images} "
        f"--bundle {bundle} --ckpts ... --out {out}"
    )
    title = f"{bundle}: tiles with small nuclei segmented again at 2×, `{images}`"
    report = variants_markdown(title, command, len(names), result["summary"], METRICS)
    report += "\nReference median object area per checkpoint (px): " + ", ".join(f"{r:.0f}" for r in refs) + "\n"
    report += "\nTiles segmented again at 2×, per checkpoint: " + json.dumps(result["switched"]) + "\n"
    save_report(out, "auto_scale", result, report)
    return result["summary"]


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
