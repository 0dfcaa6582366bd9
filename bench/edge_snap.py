"""Arm "edge_snap" (rule: bench/results/v6/edge_snap/rule.txt): each object's outline moved by at most 2 px to the
tile's steepest haematoxylin edge, per tile or per object, scored on instance maps the bundle already wrote.

    python -m bench.edge_snap --pred /tmp/w/pred --seeds 0,1,2,3,4 --out bench/results/v6/edge_snap

``--pred`` holds ``s<seed>/<dataset>/<stem>_inst.tif`` (default ``inference.json`` outputs); labels only score.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage as ndi
from scipy.stats import wilcoxon
from skimage.segmentation import expand_labels

from labelfree.core.imageio import find_label, load_instance_map
from labelfree.core.metrics import instance_scores
from labelfree.transforms.stain import tile_stain_concentrations

OFFSETS = np.arange(-2, 3)
DATASETS = {"monuseg": "../shared/data/monuseg/train", "cpm15": "../shared/data/cpm15/train"}


def edge_gradient(rgb: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the tile's smoothed haematoxylin, ``(H, W)`` float32."""
    h = ndi.gaussian_filter(tile_stain_concentrations(rgb)[0][0].astype(np.float32), 1.0)
    return np.hypot(ndi.sobel(h, 0), ndi.sobel(h, 1))


def levels(inst: np.ndarray, reach: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Signed layer index around the objects and each pixel's object (own, or nearest within ``reach``)."""
    fg = inst > 0
    inside = np.ceil(ndi.distance_transform_edt(fg)).astype(np.int32)
    outside = np.ceil(ndi.distance_transform_edt(~fg)).astype(np.int32)
    level = np.where(fg, -(inside - 1), outside)
    owner = expand_labels(inst, distance=reach)
    return level, owner


def snap(inst: np.ndarray, grad: np.ndarray, per_object: bool) -> np.ndarray:
    """The rule's snapped instance map."""
    level, owner = levels(inst)
    n = int(inst.max()) + 1
    lv = np.clip(level, OFFSETS[0] - 1, OFFSETS[-1] + 1) - (OFFSETS[0] - 1)  # 0 .. len+1
    nb = len(OFFSETS) + 2
    sel = owner > 0
    key = owner[sel].astype(np.int64) * nb + lv[sel]
    sums = np.bincount(key, weights=grad[sel], minlength=n * nb).reshape(n, nb)[:, 1:-1]
    counts = np.bincount(key, minlength=n * nb).reshape(n, nb)[:, 1:-1]
    # area an object keeps at offset d: its pixels of level <= d (deep interior included)
    cum = np.cumsum(np.bincount(key, minlength=n * nb).reshape(n, nb), axis=1)[:, 1:-1]
    area = np.bincount(inst.ravel(), minlength=n)
    order = np.argsort(np.abs(OFFSETS), kind="stable")  # ties go to the offset nearest 0
    if per_object:
        means = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
        best = order[np.argmax(means[:, order], axis=1)]
    else:
        tot = sums[1:].sum(0) / np.maximum(counts[1:].sum(0), 1)
        best = np.full(n, order[np.argmax(tot[order])])
    # never below half the area: the smallest offset that keeps at least half
    ok = cum >= 0.5 * area[:, None]
    first_ok = np.argmax(ok, axis=1)
    best = np.maximum(best, first_ok)
    d = OFFSETS[best]
    keep = sel & (level <= d[owner])
    out = np.where(keep, owner, 0).astype(inst.dtype)
    return out


def score(pred_root: Path, seeds: list[int]) -> dict:
    rows: dict = {}
    grads: dict = {}
    for ds, root in DATASETS.items():
        root = Path(root)
        for s in seeds:
            folder = pred_root / f"s{s}" / ds
            for f in sorted(folder.glob("*_inst.tif")):
                stem = f.name[: -len("_inst.tif")]
                rgb = np.asarray(Image.open(root / "images" / f"{stem}.png").convert("RGB"))
                gt = load_instance_map(find_label(root / "labels", stem))
                inst = tifffile.imread(f)
                if (ds, stem) not in grads:
                    grads[ds, stem] = edge_gradient(rgb)
                grad = grads[ds, stem]
                for arm, m in (("none", inst), ("tile", snap(inst, grad, False)), ("object", snap(inst, grad, True))):
                    sc = instance_scores(gt, m)
                    sc["area_ratio"] = float((m > 0).sum() / max((gt > 0).sum(), 1))
                    rows.setdefault(ds, {}).setdefault(arm, {}).setdefault(s, {})[stem] = sc
                print(ds, s, stem, flush=True)
    return rows


def table(rows: dict) -> str:
    lines = []
    for ds, arms in rows.items():
        lines += [
            f"## {ds}",
            "",
            "| arm | Dice / AJI / PQ (mean over seeds) | worst predicted / true area | AJI vs none |",
            "|---|---|---|---|",
        ]
        base = arms["none"]
        for arm, by_seed in arms.items():
            seeds = sorted(by_seed)
            m = {
                k: np.mean([np.mean([t[k] for t in by_seed[s].values()]) for s in seeds]) for k in ("dice", "aji", "pq")
            }
            worst = max(max(t["area_ratio"] for t in by_seed[s].values()) for s in seeds)
            cmp = ""
            if arm != "none":
                tiles = sorted(by_seed[seeds[0]])
                a = np.array([np.mean([by_seed[s][t]["aji"] for s in seeds]) for t in tiles])
                b = np.array([np.mean([base[s][t]["aji"] for s in seeds]) for t in tiles])
                p = wilcoxon(a, b).pvalue if np.any(a != b) else 1.0
                cmp = f"{np.mean(a - b):+.4f}, higher on {int((a > b).sum())} of {len(tiles)} tiles, p = {p:.2g}"
            lines.append(f"| {arm} | {m['dice']:.3f} / {m['aji']:.3f} / {m['pq']:.3f} | {worst:.2f} | {cmp} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pred", type=Path, required=True)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    rows = score(a.pred, [int(s) for s in a.seeds.split(",")])
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "scores.json").write_text(json.dumps(rows, indent=1))
    text = table(rows)
    (a.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
