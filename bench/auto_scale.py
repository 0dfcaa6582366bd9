"""Benchmark: SSimNet tiles of unknown resolution segmented again at 2× when their nuclei look small (issue 17).

The network was trained at 40× (0.25 µm per pixel). A 20× scan shows its nuclei at half the width and a quarter of the
area, and the instance step's pixel constants (``min_size``, the marker depth) are meant for the training scale; a
user who states the resolution (``--input_mpp 0.5``) gets the tile resampled to the model's scale, one who does not
gets it as it is. The variant ``auto_scale`` decides per tile without being told, from what the network itself finds:

1. the default inference at the tile's own pixels;
2. ``m``, the median area of the objects it keeps, against ``r``, the median over the checkpoint's training tiles
   (``reference_images``) of each tile's ``m`` under the same inference (no labels);
3. a tile with at least :data:`MIN_OBJECTS` objects and ``m < r / 2`` (nearer, in log area, to the quarter area of a
   scan at half the magnification than to the training area: :data:`AREA_FRACTION`) is segmented again as the bundle
   does with ``--input_mpp 0.5``, and that result is kept.

The rule and its constants were written before any score (``bench/results/v6/auto_scale/rule.txt``). Each
checkpoint's network runs with the bundle's own preprocessing, views and inferer, as :mod:`bench.view_agreement`
does; ``default`` rebuilds the bundle's instances (and reproduces the harness's figures). Labels are read only to
score.

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
from tqdm import tqdm

from bench.report_files import save_report
from bench.variant_stats import checkpoint_list, checkpoint_tiles, summarise_variants, variants_markdown
from bench.view_agreement import view_probabilities
from labelfree.core.imageio import list_images
from labelfree.core.metrics import instance_scores
from labelfree.engines.slides import bundle_parser
from labelfree.transforms.instances import drop_small_objects, instances_from_map
from labelfree.transforms.scale import MatchSpatialSize

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("default", "auto_scale")
METRICS = ("dice", "aji", "pq", "precision", "recall")
#: a tile is re-segmented at 2x when its median object is below this fraction of the reference (sqrt of 1/4)
AREA_FRACTION = 0.5
#: fewer objects than this give no reliable median: the tile keeps its own scale
MIN_OBJECTS = 10
#: the resolution a re-segmented tile is taken to have (a 20x scan), microns per pixel
UPSCALED_MPP = 0.5


class BundleSegmenter:
    """SSimNet's default inference of one tile at a stated ``input_mpp`` (``None``: the tile's own pixels), as the
    bundle's instance step makes it; the instance map is at the tile's own pixels."""

    def __init__(self, images: str | Path, input_mpp: float | None):
        parser = bundle_parser(REPO / "bundles" / "ssimnet", {"dataset_dir": str(images), "input_mpp": input_mpp})
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.network = parser.get_parsed_content("network")
        self.flips = parser.get_parsed_content("flip_inferer")
        self.min_rel_area = parser["min_rel_area"]
        self.kwargs = {"threshold": parser["threshold"], "min_size": parser["min_size"], "h": parser["marker_depth"]}
        self.kwargs |= {"resplit_irregular": parser["resplit_irregular"], "min_mean_prob": parser["min_mean_prob"]}

    def __call__(self, item: dict, network: torch.nn.Module) -> tuple[np.ndarray, float, int]:
        """``item``: this segmenter's preprocessing of a tile. Returns the instance map at the tile's pixels, the
        median object area and the object count at the network's scale."""
        with torch.inference_mode():
            prob, _ = view_probabilities(self.flips, torch.as_tensor(item["image"])[None].float(), network)
        inst = drop_small_objects(instances_from_map(prob, **self.kwargs), self.min_rel_area)
        areas = np.bincount(inst.ravel())[1:]
        areas = areas[areas > 0]
        median = float(np.median(areas)) if areas.size else 0.0
        to_tile = MatchSpatialSize(tuple(item["tile"].shape[-2:]), True)
        return np.asarray(to_tile(torch.as_tensor(inst[None])))[0], median, int(areas.size)


def reference_areas(native: BundleSegmenter, names: list, shipped: Path, images: str | Path) -> list[float]:
    """Per checkpoint: the median over ``images`` (its training tiles) of each tile's median object area."""
    refs = []
    for i, ckpt in enumerate(names):
        native.network.load_state_dict(torch.load(ckpt or shipped, map_location="cpu", weights_only=True))
        native.network.eval()
        medians = []
        for path in tqdm(list_images(images), desc=f"reference, checkpoint {i}", unit="image"):
            _, median, count = native(native.preprocessing({"image": str(path)}), native.network)
            if count:
                medians.append(median)
        refs.append(float(np.median(medians)))
    return refs


def run(images: str, labels: str, out: str, reference_images: str, ckpts: str | tuple = "", threads: int = 2) -> dict:
    """Score ``default`` and ``auto_scale`` for every checkpoint; write ``auto_scale.{json,md}`` under ``out``."""
    torch.set_num_threads(threads)
    names = checkpoint_list(ckpts)
    shipped = REPO / "bundles" / "ssimnet" / "models" / "model.pt"
    native, upscaled = BundleSegmenter(images, None), BundleSegmenter(images, UPSCALED_MPP)
    refs = reference_areas(native, names, shipped, reference_images)
    rows, switched = [], {}
    for i, path, gt, item in checkpoint_tiles(native.network, names, shipped, images, labels, native.preprocessing):
        inst, median, count = native(item, native.network)
        variants = {"default": inst, "auto_scale": inst}
        if count >= MIN_OBJECTS and median < AREA_FRACTION * refs[i]:
            item2x = upscaled.preprocessing({"image": str(path)})
            variants["auto_scale"] = upscaled(item2x, native.network)[0]
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
        f"--ckpts ... --out {out}"
    )
    title = f"SSimNet: tiles with small nuclei segmented again at 2×, `{images}`"
    report = variants_markdown(title, command, len(names), result["summary"], METRICS)
    report += "\nReference median object area per checkpoint (px): " + ", ".join(f"{r:.0f}" for r in refs) + "\n"
    report += "\nTiles segmented again at 2×, per checkpoint: " + json.dumps(result["switched"]) + "\n"
    save_report(out, "auto_scale", result, report)
    print(report)
    return result["summary"]


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
