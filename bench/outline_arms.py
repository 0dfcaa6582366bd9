"""Post-processing arms on instance maps the bundle already wrote, each with its rule written first:

- ``edge_snap`` (``bench/results/v6/edge_snap/rule.txt``): each object's outline moved by at most 2 px to the tile's
  steepest haematoxylin edge, one offset per tile (``tile``) or per object (``object``);
- ``dark_core`` (``bench/results/v6/dark_core/rule.txt``): on a tile whose objects' haematoxylin is clearly two
  populations, the objects trimmed to their dark cores.

    python -m bench.outline_arms --arms tile,object --pred PRED --seeds 0,1,2,3,4 --out bench/results/v6/edge_snap
    python -m bench.outline_arms --arms dark_core --pred PRED --seeds 0,1,2,3,4 --out bench/results/v6/dark_core

``PRED`` holds ``s<seed>/<dataset>/<stem>_inst.tif`` (default ``inference.json`` outputs); labels only score.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.segmentation import expand_labels

from bench.report_files import save_report
from bench.signed_rank import signed_rank_p
from labelfree.core.imageio import find_label, load_instance_map, load_rgb
from labelfree.core.metrics import instance_scores
from labelfree.transforms.stain import tile_stain_concentrations

OFFSETS = np.arange(-2, 3)
DATASETS = {"monuseg": "../shared/data/monuseg/train", "cpm15": "../shared/data/cpm15/train"}


def smooth_haematoxylin(rgb: np.ndarray) -> np.ndarray:
    """The tile's own haematoxylin concentration, Gaussian-smoothed (sigma 1 px), ``(H, W)`` float32."""
    return ndi.gaussian_filter(tile_stain_concentrations(rgb)[0][0].astype(np.float32), 1.0)


def edge_gradient(h: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the smoothed haematoxylin ``h``, ``(H, W)`` float32."""
    return np.hypot(ndi.sobel(h, 0), ndi.sobel(h, 1))


def two_gaussians(values: np.ndarray, bins: int = 1024, iters: int = 200) -> tuple[float, float]:
    """A two-component Gaussian mixture fitted by EM to ``values`` (on a ``bins``-bin histogram, started from Otsu's
    split): the Bayes boundary between the two means and Ashman's D of the components (0 when it cannot be fitted).

    On the histogram, not the ~10^5 pixels: EM on bin centres weighted by their counts, which scikit-learn's
    ``GaussianMixture`` cannot do (it takes no sample weights)."""
    if values.size < 2 or values.min() == values.max():
        return float(values.max(initial=0.0)), 0.0
    counts, edges = np.histogram(values, bins=bins)
    x = 0.5 * (edges[:-1] + edges[1:])
    w = counts / counts.sum()
    t = float(threshold_otsu(hist=(counts, x)))
    sides = [x < t, x >= t]
    if any(w[m].sum() == 0 for m in sides):
        return t, 0.0
    pi = np.array([w[m].sum() for m in sides])
    mu = np.array([np.sum(w[m] * x[m]) / w[m].sum() for m in sides])
    floor = (edges[1] - edges[0]) ** 2  # a component never narrower than one bin
    var = np.array([max(np.sum(w[m] * (x[m] - mu[k]) ** 2) / w[m].sum(), floor) for k, m in enumerate(sides)])
    last = -np.inf
    for _ in range(iters):
        dens = (
            pi[:, None] * np.exp(-0.5 * (x[None] - mu[:, None]) ** 2 / var[:, None]) / np.sqrt(2 * np.pi * var)[:, None]
        )
        total = np.maximum(dens.sum(0), 1e-300)
        ll = float(np.sum(w * np.log(total)))
        r = dens / total * w[None]
        pi = r.sum(1)
        if np.any(pi <= 0):
            return t, 0.0
        mu = (r * x[None]).sum(1) / pi
        var = np.maximum((r * (x[None] - mu[:, None]) ** 2).sum(1) / pi, floor)
        if ll - last < 1e-9:
            break
        last = ll
    lo, hi = np.argsort(mu)
    between = (x > mu[lo]) & (x < mu[hi])
    if between.any():
        d = [pi[k] * np.exp(-0.5 * (x[between] - mu[k]) ** 2 / var[k]) / np.sqrt(var[k]) for k in (lo, hi)]
        cross = np.flatnonzero(d[1] >= d[0])
        t = float(x[between][cross[0]]) if cross.size else t
    return t, float(np.sqrt(2.0) * (mu[hi] - mu[lo]) / np.sqrt(var[lo] + var[hi]))


def dark_core(inst: np.ndarray, h: np.ndarray, min_d: float = 2.0) -> tuple[np.ndarray, bool]:
    """The rule's trimmed instance map, and whether the tile was trimmed."""
    fg = inst > 0
    t, d = two_gaussians(h[fg])
    if not d > min_d:
        return inst, False
    out = inst.copy()
    dark = h >= t
    for i, sl in enumerate(ndi.find_objects(inst), start=1):
        if sl is None:
            continue
        obj = inst[sl] == i
        core = obj & dark[sl]
        if core.sum() * 2 < obj.sum():
            continue
        core = ndi.binary_fill_holes(core) & obj
        lab, n = ndi.label(core)
        if n > 1:
            core = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
        region = out[sl]
        region[obj & ~core] = 0
    return out, True


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
    per_level = np.bincount(key, minlength=n * nb).reshape(n, nb)
    counts = per_level[:, 1:-1]
    # area an object keeps at offset d: its pixels of level <= d (deep interior included)
    cum = np.cumsum(per_level, axis=1)[:, 1:-1]
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
    return np.where(keep, owner, 0).astype(inst.dtype)


ARMS = ("tile", "object", "dark_core")


def score(pred_root: Path, seeds: list[int], arms: list[str]) -> dict:
    rows: dict = {}
    tiles: dict = {}  # per tile, read and separated once for all seeds: labels, haematoxylin, its gradient
    for ds, root in DATASETS.items():
        root = Path(root)
        for s in seeds:
            folder = pred_root / f"s{s}" / ds
            for f in sorted(folder.glob("*_inst.tif")):
                stem = f.name[: -len("_inst.tif")]
                if (ds, stem) not in tiles:
                    h = smooth_haematoxylin(load_rgb(root / "images" / f"{stem}.png"))
                    tiles[ds, stem] = (load_instance_map(find_label(root / "labels", stem)), h, edge_gradient(h))
                gt, h, grad = tiles[ds, stem]
                inst = load_instance_map(f)
                for arm in ("none", *arms):
                    changed = True
                    if arm == "none":
                        m = inst
                    elif arm == "dark_core":
                        m, changed = dark_core(inst, h)
                    else:
                        m = snap(inst, grad, per_object=arm == "object")
                    sc = instance_scores(gt, m)
                    sc["area_ratio"] = float((m > 0).sum() / max((gt > 0).sum(), 1))
                    sc["changed"] = bool(changed and not np.array_equal(m, inst))
                    rows.setdefault(ds, {}).setdefault(arm, {}).setdefault(s, {})[stem] = sc
                print(ds, s, stem, flush=True)
    return rows


def table(rows: dict) -> str:
    lines = []
    for ds, arms in rows.items():
        lines += [
            f"## {ds}",
            "",
            "| arm | Dice / AJI / PQ (mean over seeds) | worst predicted / true area | tile-runs changed | AJI vs none |",
            "|---|---|---|---|---|",
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
                p = signed_rank_p(a, b)
                cmp = f"{np.mean(a - b):+.4f}, higher on {int((a > b).sum())} of {len(tiles)} tiles, p = {p:.2g}"
            changed = sum(t.get("changed", False) for s in seeds for t in by_seed[s].values())
            runs = sum(len(by_seed[s]) for s in seeds)
            lines.append(
                f"| {arm} | {m['dice']:.3f} / {m['aji']:.3f} / {m['pq']:.3f} | {worst:.2f} | {changed} of {runs} | {cmp} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pred", type=Path, required=True)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--arms", default="tile,object", help=f"comma-separated, of {', '.join(ARMS)}")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    arms = a.arms.split(",")
    if unknown := set(arms) - set(ARMS):
        ap.error(f"unknown arms {sorted(unknown)}; use {', '.join(ARMS)}")
    rows = score(a.pred, [int(s) for s in a.seeds.split(",")], arms)
    save_report(a.out, "table", rows, table(rows) + "\n", indent=1)


if __name__ == "__main__":
    main()
