"""Benchmark: large objects carved down to their dark cores, or divided among them, after a bundle's own inference
(rule: ``bench/results/carve_large/rule.txt``, written before any score; two arms added in its addenda, each before
its own scores). Measured on both bundles and adopted by neither (the folder's README).

On frozen sections the nuclei class of either bundle can take whole patches of purple cytoplasm with the nuclei inside
them; such a patch comes out as one object several times the tile's typical nucleus. Inside it, the nuclei are darker
than the cytoplasm around them, so the object's own Otsu threshold on haematoxylin finds them. A large pale nucleus
whose chromatin lines its rim stays whole, because each dark part has its holes filled; an object with no dark part of
nucleus size is left as it was. Arms: ``carved`` (only the dark parts kept), ``split`` (the object divided among them,
every pixel kept) and ``split_irregular`` (the same, only for the large objects that are not convex).

``score`` applies every arm to each instance map of one or more prediction folders (the harness's ``<run>/pred``) and
writes, per folder, the per-tile scores of the predictions as they were (``default``) and of each arm, in the layout
:mod:`bench.arm_table` reads (``<out>/<arm>/seed<N>/results.csv``). Labels are read only to score.

    python -m bench.carve_large score --images ../shared/data/$DS/train/images \\
        --labels ../shared/data/$DS/train/labels --preds PRED0,PRED1,... --out bench/results/carve_large/ssimnet/$DS
    python -m bench.arm_table --root bench/results/carve_large/ssimnet --arms default,carved,split,split_irregular
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import fire
import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed
from tqdm import tqdm

from bench.harness.compare import parse_seeds
from bench.harness.results_csv import write_results_csv
from labelfree.core.imageio import find_label, list_images, load_instance_map, load_rgb
from labelfree.core.metrics import instance_scores
from labelfree.core.shape import solidities
from labelfree.transforms.instances import MIN_REL_AREA, ONE_NUCLEUS_SOLIDITY, SEVERAL_NUCLEI_AREA
from labelfree.transforms.stain import tile_stain_concentrations

#: an object is large when its area exceeds this many times the tile's median object area
LARGE = 3.0


def _dark_parts(obj: np.ndarray, haematoxylin: np.ndarray, min_area: float) -> list[np.ndarray]:
    """The parts of ``obj`` above its own Otsu threshold on ``haematoxylin``, holes filled, of at least ``min_area``
    pixels (none when the object's haematoxylin is constant)."""
    values = haematoxylin[obj]
    if values.max() - values.min() < 1e-6:
        return []
    parts, _ = ndi.label(obj & (haematoxylin > threshold_otsu(values)))
    kept = []
    for i, sl in enumerate(ndi.find_objects(parts), start=1):
        part = np.zeros_like(obj)
        part[sl] = ndi.binary_fill_holes(parts[sl] == i)
        part &= obj
        if part.sum() >= min_area:
            kept.append(part)
    return kept


def _large_objects_and_parts(
    inst: np.ndarray, haematoxylin: np.ndarray, large: float, min_rel_area: float, max_solidity: float | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]]:
    """For every object above ``large`` × the median object area (and, with ``max_solidity``, less convex than that):
    its bounding box of ``inst`` (a view, to be rewritten in place), its mask and haematoxylin there, and its dark
    parts (:func:`_dark_parts`)."""
    ids, areas = np.unique(inst[inst > 0], return_counts=True)
    if ids.size == 0:
        return
    median = float(np.median(areas))
    chosen = areas > large * median
    if max_solidity is not None:
        _, solid = solidities(inst)  # one value per object, in the order of ``ids``
        chosen &= solid < max_solidity
    boxes = ndi.find_objects(inst)
    for label in ids[chosen]:
        box = boxes[label - 1]
        region = inst[box]
        obj = region == label
        yield region, obj, haematoxylin[box], _dark_parts(obj, haematoxylin[box], min_rel_area * median)


def carve_large_objects(
    inst: np.ndarray, haematoxylin: np.ndarray, large: float = LARGE, min_rel_area: float = MIN_REL_AREA
) -> np.ndarray:
    """Replace each large object by the dark parts its own Otsu threshold on haematoxylin finds.

    Args:
        inst: ``(H, W)`` instance map (0 background).
        haematoxylin: ``(H, W)`` haematoxylin concentration of the same tile.
        large: an object is carved when its area is above ``large`` × the median object area.
        min_rel_area: a dark part replaces the object only if its area is at least this × the median object area.

    Returns:
        ``(H, W)`` int32 instance map, objects numbered 1..n in the order of their first pixel.
    """
    out = np.asarray(inst).astype(np.int32, copy=True)
    next_id = int(out.max()) + 1
    for region, obj, _, kept in _large_objects_and_parts(out, haematoxylin, large, min_rel_area):
        if not kept:
            continue
        region[obj] = 0
        for part in kept:
            region[part & (region == 0)] = next_id
            next_id += 1
    return _renumbered(out)


def split_large_objects(
    inst: np.ndarray,
    haematoxylin: np.ndarray,
    large: float = LARGE,
    min_rel_area: float = MIN_REL_AREA,
    max_solidity: float | None = None,
) -> np.ndarray:
    """Divide each large object with two or more dark parts among them; no pixel changes from foreground to background.

    The dark parts are :func:`carve_large_objects`' own; they seed a watershed on the inverted haematoxylin inside the
    object, so the lines fall where the object is palest between its dark parts.

    Args:
        inst: ``(H, W)`` instance map (0 background).
        haematoxylin: ``(H, W)`` haematoxylin concentration of the same tile.
        large: see :func:`carve_large_objects`.
        min_rel_area: see :func:`carve_large_objects`.
        max_solidity: only objects whose solidity is below this are divided (``None``: every large one). With
            ``large=SEVERAL_NUCLEI_AREA, max_solidity=ONE_NUCLEUS_SOLIDITY`` these are the objects the bundles' own
            re-split calls merged nuclei (:func:`split_irregular_objects`).

    Returns:
        ``(H, W)`` int32 instance map with the same foreground, objects numbered 1..n in the order of their first pixel.
    """
    out = np.asarray(inst).astype(np.int32, copy=True)
    next_id = int(out.max()) + 1
    for region, obj, haem, kept in _large_objects_and_parts(out, haematoxylin, large, min_rel_area, max_solidity):
        if len(kept) < 2:
            continue
        markers = np.zeros(obj.shape, dtype=np.int32)
        for i, part in enumerate(kept, start=1):
            markers[part & (markers == 0)] = i
        pieces = watershed(-haem, markers, mask=obj)
        region[obj] = pieces[obj] + next_id - 1
        next_id += len(kept)
    return _renumbered(out)


def split_irregular_objects(inst: np.ndarray, haematoxylin: np.ndarray) -> np.ndarray:
    """:func:`split_large_objects` on the objects :func:`labelfree.transforms.instances.resplit_irregular_objects`
    calls merged nuclei (over ``SEVERAL_NUCLEI_AREA`` × the median, solidity under ``ONE_NUCLEUS_SOLIDITY``), with the
    same constants; a convex large object is left alone."""
    return split_large_objects(inst, haematoxylin, large=SEVERAL_NUCLEI_AREA, max_solidity=ONE_NUCLEUS_SOLIDITY)


def _renumbered(inst: np.ndarray) -> np.ndarray:
    """Objects numbered 1..n by their first pixel in raster order."""
    flat = inst.ravel()
    ids, first = np.unique(flat, return_index=True)
    keep = ids > 0
    order = ids[keep][np.argsort(first[keep])]
    lut = np.zeros(int(inst.max()) + 1, dtype=np.int32)
    lut[order] = np.arange(1, order.size + 1, dtype=np.int32)
    return lut[inst]


def score(
    images: str,
    labels: str,
    preds: str | Sequence[str],
    out: str,
    seeds: int | str | Sequence[int] | None = None,
) -> Path:
    """Score each prediction folder as it is and carved; see the module docstring.

    Args:
        images: the tiles the predictions were made from.
        labels: instance labels named like the tiles (read only to score).
        preds: comma-separated prediction folders holding ``<stem>_inst.tif``, one per checkpoint.
        out: folder of ``<arm>/seed<N>`` report folders, one per arm (default, carved, split, split_irregular).
        seeds: the seed number of each folder, comma-separated (default: 0, 1, ... in the order given).

    Raises:
        ValueError: the seeds do not pair with the folders.
        FileNotFoundError: a folder lacks a tile's instance map (checked before any tile is scored).
    """
    folders = [Path(p) for p in (preds.split(",") if isinstance(preds, str) else preds) if str(p)]
    if seeds is None:
        numbers = list(range(len(folders)))
    else:  # one int is one folder's seed here, not the harness's count of seeds
        numbers = [seeds] if isinstance(seeds, int) else parse_seeds(seeds)
    if len(numbers) != len(folders):
        raise ValueError(f"{len(folders)} prediction folders but {len(numbers)} seeds")
    tiles = list_images(images)
    missing = [f / f"{t.stem}_inst.tif" for f in folders for t in tiles if not (f / f"{t.stem}_inst.tif").is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} instance maps missing, the first {missing[0]}")
    haem = {}
    for path in tqdm(tiles, desc="haematoxylin", unit="tile"):
        haem[path.stem] = tile_stain_concentrations(load_rgb(path), seed=0)[0][0]
    truth = {path.stem: load_instance_map(find_label(Path(labels), path)) for path in tiles}
    for seed, folder in zip(numbers, folders):
        rows = {"default": [], "carved": [], "split": [], "split_irregular": []}
        for path in tqdm(tiles, desc=f"seed {seed}", unit="tile"):
            inst = tifffile.imread(folder / f"{path.stem}_inst.tif")
            h = haem[path.stem]
            arms = (
                ("default", inst),
                ("carved", carve_large_objects(inst, h)),
                ("split", split_large_objects(inst, h)),
                ("split_irregular", split_irregular_objects(inst, h)),
            )
            for arm, pred in arms:
                rows[arm].append(
                    {"method": arm, "seed": seed, "image": path.stem, **instance_scores(truth[path.stem], pred)}
                )
        for arm, arm_rows in rows.items():
            write_results_csv(arm_rows, Path(out) / arm / f"seed{seed}" / "results.csv")
    return Path(out)


if __name__ == "__main__":
    fire.Fire({"score": score})
