"""Benchmark: large objects seen whole at half scale replace the default's pieces of them (issue 17's fragments).

The rule (``bench/results/v6/half_scale_wholes/rule.txt``, written before any half-scale pass was scored): the default
instance map ``F`` of a tile and the map ``H`` of the same tile segmented at half its size and brought back
(``input_mpp`` = model_mpp / 2) are fused: an object of ``H`` replaces the objects of ``F`` lying by at least half in
it when there are at least two of them, it is solid (one convex nucleus), large (twice the tile's median object of
``F``) and they make up at least half of it. Both maps come from comparison-harness runs; labels are read only to
score.

    python -m bench.half_scale_wholes --images ../shared/data/$DS/train/images --labels ../shared/data/$DS/train/labels \\
        --full FULL_PRED --half HALF_PRED --seed 0 --out bench/results/v6/half_scale_wholes/$DS
"""

from __future__ import annotations

from pathlib import Path

import fire
import numpy as np
import tifffile
from tqdm import tqdm

from bench.harness.results_csv import write_results_csv
from labelfree.core.imageio import find_label, list_images, load_instance_map
from labelfree.core.metrics import instance_scores
from labelfree.core.shape import solidities

#: the rule's constants (rule.txt)
MIN_PIECES, MIN_SOLIDITY, MIN_REL_AREA, MIN_PIECE_SHARE, MIN_COVER = 2, 0.90, 2.0, 0.5, 0.5
METRICS = ("dice", "aji", "pq", "precision", "recall")


def join_half_scale_wholes(full: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, int]:
    """Fuse the default instance map with the half-scale one by the rule's four conditions.

    Args:
        full: ``(H, W)`` instance map of the default inference (0 = background).
        half: ``(H, W)`` instance map of the half-scale inference, brought back to the tile's pixels.

    Returns:
        the fused ``(H, W)`` int32 map (objects of ``full`` keep their ids, each replacement gets a new one) and the
        number of replacements.
    """
    full = np.asarray(full).astype(np.int32)
    half = np.asarray(half).astype(np.int32)
    if full.shape != half.shape:
        raise ValueError(f"instance maps differ in size: {full.shape} and {half.shape}")
    out = full.copy()
    f_area = np.bincount(full.ravel())
    if full.max() == 0 or half.max() == 0:
        return out, 0
    median = float(np.median(f_area[1:][f_area[1:] > 0]))
    h_ids, h_sol = solidities(half)
    h_area = np.bincount(half.ravel())
    # overlap counts of every (half object, full object) pair, on the pixels both mark
    both = (full > 0) & (half > 0)
    pairs, counts = np.unique(np.stack([half[both], full[both]]), axis=1, return_counts=True)
    next_id = int(full.max()) + 1
    joined = 0
    for h, sol in zip(h_ids, h_sol):
        if sol < MIN_SOLIDITY or h_area[h] < MIN_REL_AREA * median:
            continue
        sel = pairs[0] == h
        f_ids, inside = pairs[1][sel], counts[sel]
        piece = inside >= MIN_PIECE_SHARE * f_area[f_ids]
        if piece.sum() < MIN_PIECES or inside[piece].sum() < MIN_COVER * h_area[h]:
            continue
        pieces = np.isin(out, f_ids[piece])
        out[pieces] = 0
        out[(half == h) & ((out == 0) | pieces)] = next_id
        next_id += 1
        joined += 1
    return out, joined


def run(images: str, labels: str, full: str, half: str, out: str, seed: int = 0) -> None:
    """Fuse every tile's two maps, score default and fused (labels only to score) and write harness-style reports.

    Writes ``out/default/seed<N>/results.csv`` and ``out/half_scale_wholes/seed<N>/results.csv`` (read by
    ``bench.arm_table``), and the fused maps to ``out/half_scale_wholes/seed<N>/pred``.
    """
    rows: dict[str, list[dict]] = {"default": [], "half_scale_wholes": []}
    pred_dir = Path(out) / "half_scale_wholes" / f"seed{seed}" / "pred"
    pred_dir.mkdir(parents=True, exist_ok=True)
    total = 0
    for tile in tqdm(list_images(images), desc="tiles", unit="tile"):
        gt = load_instance_map(find_label(Path(labels), tile))
        f = tifffile.imread(Path(full) / f"{tile.stem}_inst.tif")
        fused, n = join_half_scale_wholes(f, tifffile.imread(Path(half) / f"{tile.stem}_inst.tif"))
        total += n
        tifffile.imwrite(pred_dir / f"{tile.stem}_inst.tif", fused.astype(np.uint16), compression="zlib")
        for arm, inst in (("default", f), ("half_scale_wholes", fused)):
            s = instance_scores(gt, inst)
            rows[arm].append({"method": arm, "seed": seed, "image": tile.stem, **s})
    for arm, arm_rows in rows.items():
        write_results_csv(arm_rows, Path(out) / arm / f"seed{seed}" / "results.csv")
    means = {arm: {k: float(np.mean([r[k] for r in rs])) for k in METRICS} for arm, rs in rows.items()}
    print(f"{total} objects replaced over {len(rows['default'])} tiles")
    for arm, m in means.items():
        print(f"{arm}: " + " / ".join(f"{m[k]:.3f}" for k in METRICS))


if __name__ == "__main__":
    fire.Fire(run)
