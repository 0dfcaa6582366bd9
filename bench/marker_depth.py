"""Benchmark: how the SSimNet bundle's instance step splits touching nuclei, rule by rule, on one set of probabilities.

The error analysis (bundles/ssimnet/docs/README.md, 0.3.0) found merged nuclei, not the mask, to be most of the AJI
gap. This runs the shipped network once per tile (the default inference: the tile and its 180° rotation, float32), keeps
the nucleus probability, and scores the instance rules on it (labels only to score):

* ``default``: the bundle's (marker depth 2 px, irregular objects re-split);
* ``depth1``: marker depth 1 px (found to help both sets before the re-split existed, by scoring: not a candidate
  default, measured to see whether it still does);
* ``relative``: a marker's depth scaled by its own peak, ``depth ≥ 2 px × peak / 8 px`` (8 px: the median peak of the
  MoNuSeg objects, read off the probabilities, no labels), at least 0.5 px: small nuclei (a 20× scan) split at
  shallower necks and large pale ones at deeper;
* ``tile``: one depth per tile, ``2 px × (the tile's median peak) / 8 px``;
* ``resplit_all_irregular``: the re-split without its size condition (every object of solidity < 0.9);
* ``resplit_above_median``: the re-split for irregular objects above the tile's median area (instead of 1.5×).

Rules that also read the image (its haematoxylin concentration, the tile's own Vahadane stain separation), to see
whether the tile holds the neck the probability lacks:

* ``haematoxylin``: the relief weighted by the haematoxylin (smoothed, σ 3 px, over its 90th percentile in the
  foreground, at most 1): a paler seam between two dark nuclei deepens the saddle;
* ``pale_centres``: the opposite weighting, ``1 − ½ × haematoxylin / its 90th percentile`` (σ 1.5 px, at least ½):
  vesicular nuclei have dark membranes and pale insides, so a cluster of them is split along its darker lines;
* ``blob_markers``: objects the re-split looks at (above 1.5 × the median area, solidity below 0.9) that hold two or more
  maxima of the scale-normalised Laplacian of Gaussian of the haematoxylin (σ = the tile's median nucleus radius, maxima
  at least one radius apart) are flooded again from those maxima;
* ``coordinate_kmeans``: the same objects cut into ``round(area / median area)`` parts (at least 2) by k-means on their
  pixel coordinates;
* ``bounded_holes``: holes of the foreground filled only up to the tile's median component area (a larger hole is not
  the pale inside of one nucleus; the ring of nuclei around a lumen stays open).

    python -m bench.marker_depth --images ../shared/data/monuseg/train/images --labels ../shared/data/monuseg/train/labels \\
        --out bench/results/v3/marker_depth/monuseg
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from unittest import mock

import fire
import numpy as np
import torch
from scipy import ndimage as ndi

import labelfree.transforms.dynamics as dynamics
import labelfree.transforms.instances as instances
from bench.report_files import save_report
from labelfree.core.imageio import find_label, list_images, load_instance_map, load_rgb
from labelfree.core.metrics import aji, panoptic_quality, pixel_scores
from labelfree.engines.slides import bundle_parser
from labelfree.transforms.stain import tile_stain_concentrations

REPO = Path(__file__).resolve().parents[1]
THRESHOLD, MIN_SIZE, DEPTH = 0.25, 30, 2.0
#: the median peak (probability-weighted distance, px) of the shipped network's MoNuSeg objects, read without labels
REFERENCE_PEAK = 8.0
VARIANTS = ("default", "depth1", "relative", "tile", "resplit_all_irregular", "resplit_above_median")
#: the rules that read the tile's haematoxylin as well as the probability
IMAGE_VARIANTS = ("haematoxylin", "pale_centres", "blob_markers", "coordinate_kmeans", "bounded_holes")


def nucleus_probabilities(images: str, ckpt_path: str | Path | None = None) -> dict[str, np.ndarray]:
    """SSimNet's nucleus probability of every tile (the bundle's preprocessing and inferer, float32).

    Args:
        images: folder of tiles.
        ckpt_path: the weights; ``None``: the shipped ``models/model.pt``.
    """
    torch.set_num_threads(2)
    parser = bundle_parser(
        REPO / "bundles" / "ssimnet", {"dataset_dir": images, "cpu_bf16": False, "cpu_onnxruntime": False}
    )
    pre, net = parser.get_parsed_content("preprocessing"), parser.get_parsed_content("network")
    inferer = parser.get_parsed_content("inferer")
    ckpt = Path(ckpt_path) if ckpt_path else REPO / "bundles" / "ssimnet" / "models" / "model.pt"
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    net.eval()
    out = {}
    for path in list_images(images):
        item = pre({"image": str(path)})
        with torch.inference_mode():
            logits = inferer(torch.as_tensor(item["image"])[None].float(), net)
        out[path.stem] = logits[0].float().softmax(0)[1].numpy()
        print(path.stem, file=sys.stderr, flush=True)
    return out


def median_peak(prob: np.ndarray) -> float:
    """The median over the tile's default objects of their highest relief (about a nucleus's inscribed radius)."""
    fg, relief = instances.foreground_relief(prob, THRESHOLD, MIN_SIZE)
    inst = instances.sequential_labels(dynamics.dynamics_watershed(relief, fg, DEPTH), MIN_SIZE)
    return float(np.median(ndi.maximum(relief, inst, np.arange(1, inst.max() + 1)))) if inst.max() else REFERENCE_PEAK


def _relative_markers(top, a, b, saddle, h):
    """``dynamics._markers_by_dynamics`` with a maximum kept when its dynamic is at least ``h × max(0.25, peak / 8)``."""
    n = len(top) - 1
    parent, height = list(range(n + 1)), [float(t) for t in top]
    tied, keep = [[i] for i in range(n + 1)], [True] * (n + 1)
    for i, j, s in zip(a.tolist(), b.tolist(), saddle.tolist()):
        ri, rj = dynamics._root(parent, i), dynamics._root(parent, j)
        if ri == rj:
            continue
        if height[ri] < height[rj]:
            ri, rj = rj, ri
        if height[ri] > height[rj]:
            if height[rj] - s < h * max(0.25, height[rj] / REFERENCE_PEAK):
                for m in tied[rj]:
                    keep[m] = False
        else:
            tied[ri] = tied[ri] + tied[rj]
        parent[rj] = ri
    for r in range(1, n + 1):
        if parent[r] == r and height[r] < h * 0.25:
            for m in tied[r]:
                keep[m] = False
    keep[0] = False
    return np.asarray(keep)


def _weighted_relief(hema: np.ndarray, pale: bool):
    """``instances.foreground_relief`` with the relief weighted by the haematoxylin (or by its pale parts)."""
    plain = instances.foreground_relief

    def relief(p, threshold=0.5, min_size=30, sigma=1.0, fill_holes=True, distance=None):
        fg, r = plain(p, threshold, min_size, sigma, fill_holes, distance)
        if not fg.any():
            return fg, r
        smooth = ndi.gaussian_filter(hema, 1.5 if pale else 3.0)
        level = smooth / max(float(np.percentile(smooth[fg], 90)), 1e-6)
        weight = np.clip(1.0 - 0.5 * level, 0.5, 1.0) if pale else np.clip(level, 0.0, 1.0)
        return fg, r * weight

    return relief


def _bounded_fill(mask: np.ndarray) -> np.ndarray:
    """``fill_mask_holes`` for holes no larger than the median foreground component."""
    mask = np.asarray(mask, dtype=bool)
    holes, n = ndi.label(~mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(holes.ravel(), minlength=n + 1)
    components = np.bincount(ndi.label(mask)[0].ravel())[1:]
    components = components[components >= MIN_SIZE]
    limit = float(np.median(components)) if components.size else np.inf
    open_ = sizes > limit
    open_[np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]])] = True
    open_[0] = True
    return mask | ~open_[holes]


def _irregular_large(inst: np.ndarray) -> tuple[np.ndarray, float]:
    """Ids of the objects the re-split looks at (above 1.5 × the median area, solidity below 0.9), and that median."""
    from labelfree.core.shape import solidities

    areas = np.bincount(inst.ravel())
    if inst.max() == 0:
        return np.zeros(0, dtype=int), 0.0
    median = float(np.median(areas[1:][areas[1:] > 0]))
    ids, solid = solidities(inst)
    return ids[(areas[ids] > instances.SEVERAL_NUCLEI_AREA * median) & (solid < instances.ONE_NUCLEUS_SOLIDITY)], median


def _blob_markers(inst: np.ndarray, relief: np.ndarray, hema: np.ndarray) -> np.ndarray:
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    todo, median = _irregular_large(inst)
    if todo.size == 0:
        return inst
    radius = np.sqrt(median / np.pi)
    blobs = -(radius**2) * ndi.gaussian_laplace(hema.astype(np.float64), radius)
    peaks = peak_local_max(blobs, min_distance=max(1, int(radius)), labels=inst, exclude_border=False)
    owner = inst[tuple(peaks.T)]
    todo = todo[np.bincount(owner, minlength=inst.max() + 1)[todo] >= 2]
    if todo.size == 0:
        return inst
    chosen = np.isin(owner, todo)
    markers = np.zeros(inst.shape, np.int32)
    markers[tuple(peaks[chosen].T)] = np.arange(1, chosen.sum() + 1)
    region = np.isin(inst, todo)
    out = inst.copy()
    out[region] = watershed(-relief, markers, mask=region)[region] + inst.max()
    return instances.sequential_labels(out, MIN_SIZE)


def _coordinate_kmeans(inst: np.ndarray) -> np.ndarray:
    from scipy.cluster.vq import kmeans2

    todo, median = _irregular_large(inst)
    out, next_id = inst.copy(), int(inst.max()) + 1
    boxes = ndi.find_objects(inst)
    for label in todo.tolist():
        box = boxes[label - 1]
        where = np.argwhere(inst[box] == label)
        k = max(2, int(round(len(where) / median)))
        _, part = kmeans2(where.astype(float), k, minit="++", seed=1)
        crop = out[box]
        for j in range(1, k):
            crop[tuple(where[part == j].T)] = next_id
            next_id += 1
    return instances.sequential_labels(out, 1)


def split(prob: np.ndarray, variant: str, hema: np.ndarray | None = None) -> np.ndarray:
    """Instances of ``prob`` by one of :data:`VARIANTS` or :data:`IMAGE_VARIANTS` (these read ``hema``, the tile's
    ``(H, W)`` haematoxylin concentration)."""
    kwargs = dict(threshold=THRESHOLD, min_size=MIN_SIZE, h=DEPTH, resplit_irregular=True)
    if variant in ("haematoxylin", "pale_centres"):
        with mock.patch.object(instances, "foreground_relief", _weighted_relief(hema, variant == "pale_centres")):
            return instances.instances_from_map(prob, **kwargs)
    if variant == "bounded_holes":
        with mock.patch.object(instances, "fill_mask_holes", _bounded_fill):
            return instances.instances_from_map(prob, **kwargs)
    if variant == "blob_markers":
        _, relief = instances.foreground_relief(prob, THRESHOLD, MIN_SIZE)
        return _blob_markers(instances.instances_from_map(prob, **kwargs), relief, hema)
    if variant == "coordinate_kmeans":
        return _coordinate_kmeans(instances.instances_from_map(prob, **kwargs))
    if variant == "default":
        return instances.instances_from_map(prob, **kwargs)
    if variant == "depth1":
        return instances.instances_from_map(prob, **{**kwargs, "h": 1.0})
    if variant == "tile":
        return instances.instances_from_map(prob, **{**kwargs, "h": DEPTH * median_peak(prob) / REFERENCE_PEAK})
    if variant == "relative":
        with mock.patch.object(dynamics, "_markers_by_dynamics", _relative_markers):
            return instances.instances_from_map(prob, **kwargs)
    rel_area = {"resplit_all_irregular": 0.0, "resplit_above_median": 1.0}[variant]
    resplit = partial(instances.resplit_irregular_objects, rel_area=rel_area)
    with mock.patch.object(instances, "resplit_irregular_objects", resplit):
        return instances.instances_from_map(prob, **kwargs)


def run(images: str, labels: str, out: str, variants: str | tuple = VARIANTS) -> dict:
    """Score every variant on every tile; write ``marker_depth.{json,md}`` to ``out``."""
    names = variants.split(",") if isinstance(variants, str) else list(variants)
    probs = nucleus_probabilities(images)
    paths = {p.stem: p for p in list_images(images)}
    rows: dict[str, dict[str, list[float]]] = {v: {} for v in names}
    for stem, prob in probs.items():
        gt = load_instance_map(find_label(labels, stem + ".png"))
        hema = None
        if set(names) & set(IMAGE_VARIANTS):
            hema = tile_stain_concentrations(load_rgb(paths[stem]))[0][0]
            if hema.shape != prob.shape:
                raise ValueError(
                    f"{stem}: image rules need tiles at the model's scale, got {hema.shape} vs {prob.shape}"
                )
        for v in names:
            inst = split(prob, v, hema)
            rows[v][stem] = [pixel_scores(gt, inst)["dice"], aji(gt, inst), panoptic_quality(gt, inst)["pq"]]
    result = {"images": images, "per_tile": rows, "median_peak": {s: median_peak(p) for s, p in probs.items()}}
    lines = [
        f"SSimNet shipped checkpoint, instance rules on the same probabilities (`{images}`, {len(probs)} tiles; "
        "`python -m bench.marker_depth`; labels only to score):",
        "",
        "| rule | Dice | AJI | PQ | AJI vs default (tiles up / down) |",
        "|---|---|---|---|---|",
    ]
    base = np.array(list(rows[names[0]].values()))
    for v in names:
        a = np.array(list(rows[v].values()))
        up, down = int((a[:, 1] > base[:, 1] + 1e-9).sum()), int((a[:, 1] < base[:, 1] - 1e-9).sum())
        lines.append(f"| {v} | {a[:, 0].mean():.4f} | {a[:, 1].mean():.4f} | {a[:, 2].mean():.4f} | {up} / {down} |")
    save_report(out, "marker_depth", result, "\n".join(lines) + "\n", indent=1)
    return result


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
