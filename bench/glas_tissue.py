"""Benchmark: DCGN's tissue mode on GlaS (colon glands), against k-means in optical density.

Both methods give a per-tile map of three compartments named by increasing haematoxylin (least stained, eosin-rich,
haematoxylin-rich). One label-free rule, fixed before any score was seen, turns such a map into a gland mask: colon
glands are rings of epithelium (the haematoxylin-rich class) around a lumen and mucin (pale), so the
haematoxylin-rich pixels are closed over the gaps between nuclei (a disc of ``closing_um`` µm), their holes are filled,
and components smaller than ``min_area_um2`` are dropped. The binary GlaS labels are read only to score (Dice and IoU
of the gland mask, per image, then averaged).

    python -m bench.glas_tissue --images ../shared/data/glas/train/images \\
        --labels ../shared/data/glas/train/labels_binary --out bench/results/glas_tissue
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import fire
import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.morphology import closing, disk, opening
from tqdm import tqdm

from bench.harness.methods import REPO, run_monai_bundle
from labelfree.core.imageio import list_images, load_rgb, save_text
from labelfree.core.shape import solidities
from labelfree.transforms.contour import remove_small_objects
from labelfree.transforms.stain import optical_density, tile_stain_concentrations, tissue_mask

#: GlaS tiles are 20x, about 0.62 µm per pixel
UM_PER_PIXEL = 0.62


def gland_mask(classes: np.ndarray, n_classes: int, closing_um: float = 3.0, min_area_um2: float = 400.0) -> np.ndarray:
    """The label-free gland rule: haematoxylin-rich class, closed, holes filled, small components dropped.

    Args:
        classes: ``(H, W)`` named classes, ``n_classes - 1`` = haematoxylin-rich.
        n_classes: K.
        closing_um: radius of the closing, µm.
        min_area_um2: smallest gland kept, µm².
    """
    return _closed_filled(classes == n_classes - 1, closing_um, min_area_um2)


def _closed_filled(mask: np.ndarray, closing_um: float, min_area_um2: float) -> np.ndarray:
    """``mask`` closed with a ``closing_um`` disc, its holes filled and components under ``min_area_um2`` dropped."""
    closed = closing(mask, _disc(closing_um))  # on a bool mask as binary_closing was (removed in scikit-image 0.28)
    return remove_small_objects(ndi.binary_fill_holes(closed), _area_px(min_area_um2))


def _disc(um: float) -> np.ndarray:
    """A disc of radius ``um`` µm at GlaS's resolution (at least 1 px)."""
    return disk(max(1, int(round(um / UM_PER_PIXEL))))


def _area_px(um2: float) -> int:
    """``um2`` µm² in pixels at GlaS's resolution (at least 1)."""
    return max(1, int(um2 / UM_PER_PIXEL**2))


def ring_gland_mask(
    classes: np.ndarray,
    n_classes: int,
    open_um: float = 4.0,
    ring_um: float = 3.0,
    min_ring_rich: float = 0.6,
    min_solidity: float = 0.85,
    wall_um: float = 10.0,
    closing_um: float = 3.0,
    min_area_um2: float = 400.0,
) -> np.ndarray:
    """The structural gland rule (``bench/results/glas_rings/rule.txt``): glands are thick bands of the
    haematoxylin-rich class, or a ring of it around a large pale core; stromal nuclei are small scattered blobs.

    1. bands: the haematoxylin-rich class opened with a disc of ``open_um`` (a stromal nucleus is thinner);
    2. enclosed cores: compact components (at least ``min_area_um2``, solidity at least ``min_solidity``) of the other
       classes opened with the same disc whose ring (the core dilated by ``ring_um``, minus the core) is at least
       ``min_ring_rich`` haematoxylin-rich;
    3. walls: the haematoxylin-rich pixels within ``wall_um`` of an enclosed core;
    4. their union, closed with a ``closing_um`` disc, holes filled, components under ``min_area_um2`` dropped.

    Args:
        classes: ``(H, W)`` named classes, ``n_classes - 1`` = haematoxylin-rich.
        n_classes: K.

    Returns:
        ``(H, W)`` bool gland mask.
    """
    rich = classes == n_classes - 1
    min_px = _area_px(min_area_um2)
    bands = opening(rich, _disc(open_um))
    cores, n = ndi.label(opening(~rich, _disc(open_um)))
    enclosed = np.zeros(rich.shape, dtype=bool)
    if n:
        area = np.bincount(cores.ravel(), minlength=n + 1)
        # each core's ring: dilating the label map spreads a core's id onto its neighbours (a pixel between two
        # cores takes the larger id; such pixels are rare at this size and only shift one ring a pixel). Beyond the
        # tile's edge the ring counts as not haematoxylin-rich: what cannot be seen is no evidence of a wall
        footprint = _disc(ring_um)
        pad = footprint.shape[0] // 2
        padded = np.pad(cores, pad)
        grown = ndi.grey_dilation(padded, footprint=footprint)
        ring = (grown > 0) & (padded == 0)
        ring_px = np.bincount(grown[ring], minlength=n + 1)
        ring_rich = np.bincount(grown[ring & np.pad(rich, pad)], minlength=n + 1)
        solidity = np.zeros(n + 1)
        ids, solid = solidities(cores)
        solidity[ids] = solid
        keep = (area >= min_px) & (ring_rich >= min_ring_rich * np.maximum(ring_px, 1)) & (ring_px > 0)
        keep &= solidity >= min_solidity
        keep[0] = False
        enclosed = keep[cores]
    walls = np.zeros_like(rich)
    if enclosed.any():
        walls = rich & (ndi.distance_transform_edt(~enclosed) <= wall_um / UM_PER_PIXEL)
    closed = closing(bands | enclosed | walls, _disc(closing_um))
    return remove_small_objects(ndi.binary_fill_holes(closed), min_px)


def _kmeans(x: np.ndarray, k: int, seed: int, n_fit: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means fitted on up to ``n_fit`` rows of ``x`` ``(N, C)`` drawn with ``seed``: every row's cluster ``(N,)``
    and the ``(k, C)`` centres."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    fit = x[rng.choice(len(x), size=min(n_fit, len(x)), replace=False)]
    model = KMeans(n_clusters=k, random_state=seed, n_init=3).fit(fit)
    return model.predict(x), model.cluster_centers_


def _less_eosin_cluster(features: np.ndarray, tissue: np.ndarray, seed: int, n_fit: int) -> np.ndarray:
    """The composition rules' split: the tissue pixels of ``features`` ``(H, W, C)`` in two k-means clusters (fitted on
    up to ``n_fit`` of them, drawn with ``seed``); the pixels of the cluster whose mean channel 1 (eosin) is lower, as an
    ``(H, W)`` bool mask, empty when the tissue holds nothing to split."""
    x = features[tissue]
    if len(np.unique(x.round(4), axis=0)) < 2:  # nothing to split: no gland can be told from stroma
        return np.zeros(tissue.shape, bool)
    labels, centres = _kmeans(x, 2, seed, n_fit)
    mask = np.zeros(tissue.shape, bool)
    mask[tissue] = labels == int(np.argmin(centres[:, 1]))
    return mask


def composition_gland_mask(
    classes: np.ndarray,
    n_classes: int,
    tissue: np.ndarray,
    sigma_um: float = 10.0,
    min_area_um2: float = 400.0,
    seed: int = 0,
    n_fit: int = 50_000,
) -> np.ndarray:
    """The composition gland rule (``bench/results/glas_composition/rule.txt``): glands and stroma differ in the mix
    of classes around a pixel more than in the class of the pixel (stroma: eosin-rich fibres with scattered nuclei).

    Each class's share around every pixel (its indicator smoothed by a Gaussian of ``sigma_um``) is clustered in two
    over the tissue pixels (k-means fitted on up to ``n_fit`` of them, drawn with ``seed``); the cluster with the lower
    mean eosin-rich share (class 1) is the glands, its holes (lumens) filled and components under ``min_area_um2``
    dropped.

    Args:
        classes: ``(H, W)`` named classes (0 least stained, 1 eosin-rich, ``n_classes - 1`` haematoxylin-rich).
        n_classes: K (at least 2).
        tissue: ``(H, W)`` bool, the tile's tissue (``labelfree.transforms.stain.tissue_mask``).
    """
    sigma = sigma_um / UM_PER_PIXEL
    shares = np.stack([ndi.gaussian_filter((classes == c).astype(np.float32), sigma) for c in range(n_classes)], -1)
    mask = _less_eosin_cluster(shares, tissue, seed, n_fit)
    return remove_small_objects(ndi.binary_fill_holes(mask), _area_px(min_area_um2))


def stain_composition_gland_mask(
    rgb: np.ndarray,
    tissue: np.ndarray,
    sigma_um: float = 10.0,
    closing_um: float = 3.0,
    min_area_um2: float = 400.0,
    seed: int = 0,
    n_fit: int = 50_000,
) -> np.ndarray:
    """The stain composition rule (``bench/results/glas_stain_composition/rule.txt``), a classic baseline without
    classes: the tile's own haematoxylin and eosin concentrations (the features of DCGN's mixture), each smoothed by a
    Gaussian of ``sigma_um``, clustered in two over the tissue pixels (k-means fitted on up to ``n_fit`` of them, drawn
    with ``seed``); the cluster with the lower mean eosin is the glands, closed with a ``closing_um`` disc, its holes
    filled and components under ``min_area_um2`` dropped.

    Args:
        rgb: ``(H, W, 3)`` uint8 tile.
        tissue: ``(H, W)`` bool, the tile's tissue (``labelfree.transforms.stain.tissue_mask``).

    Returns:
        ``(H, W)`` bool gland mask.
    """
    conc, _ = tile_stain_concentrations(rgb, seed)
    smooth = np.stack([ndi.gaussian_filter(c, sigma_um / UM_PER_PIXEL) for c in conc], -1)
    return _closed_filled(_less_eosin_cluster(smooth.astype(np.float64), tissue, seed, n_fit), closing_um, min_area_um2)


def kmeans_od_classes(rgb: np.ndarray, k: int = 3, seed: int = 0, n_fit: int = 50_000) -> np.ndarray:
    """k-means on the optical density of a tile; clusters named by increasing mean haematoxylin (rgb2hed)."""
    from skimage.color import rgb2hed

    raw, _ = _kmeans(optical_density(rgb).reshape(-1, 3).astype(np.float64), k, seed, n_fit)
    hema = rgb2hed(rgb)[..., 0].ravel()
    means = [hema[raw == j].mean() if (raw == j).any() else -np.inf for j in range(k)]
    inverse = np.empty(k, np.int64)
    inverse[np.argsort(means, kind="stable")] = np.arange(k)
    return inverse[raw].reshape(rgb.shape[:2])


def grade_table(rows: list[dict], grade_of: dict[str, str]) -> list[str]:
    """Markdown lines: the per-image scores of :func:`run` averaged by grade (``grade_of``: image stem → grade;
    images it does not name are ``unknown``)."""
    lines = [
        "| grade | tiles | DCGN gland Dice / IoU | k-means gland Dice / IoU | DCGN haematoxylin-rich share "
        "| DCGN, ring rule | k-means, ring rule | every pixel | tissue | stain composition (mIoU) |"
    ]
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for grade in sorted({grade_of.get(r["image"], "unknown") for r in rows}):
        sub = [r for r in rows if grade_of.get(r["image"], "unknown") == grade]
        m = {key: float(np.mean([r[key] for r in sub])) for key in sub[0] if key != "image"}
        lines.append(
            f"| {grade} | {len(sub)} | {m['dcgn_dice']:.3f} / {m['dcgn_iou']:.3f} | "
            f"{m['kmeans_od_dice']:.3f} / {m['kmeans_od_iou']:.3f} | {m['dcgn_rich_fraction']:.3f} | "
            + " | ".join(
                f"{m[f'{key}_dice']:.3f} / {m[f'{key}_iou']:.3f}"
                for key in ("dcgn_rings", "kmeans_od_rings", "whole_tile", "tissue")
            )
            + f" | {m['stain_composition_dice']:.3f} / {m['stain_composition_iou']:.3f} "
            f"({m['stain_composition_miou']:.3f}) |"
        )
    return lines


def _scores(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Gland Dice and IoU, and ``miou``: the mean of the gland and the non-gland IoU, the figure label-free GlaS
    papers report (a mask of the whole tile scores half its gland IoU on it, where gland IoU alone rewards it)."""
    inter, union = float((gt & pred).sum()), float((gt | pred).sum())
    total = float(gt.sum() + pred.sum())
    iou = inter / union if union else 1.0
    bg_inter, bg_union = float((~gt & ~pred).sum()), float((~gt | ~pred).sum())
    bg_iou = bg_inter / bg_union if bg_union else 1.0
    return {"dice": 2 * inter / total if total else 1.0, "iou": iou, "miou": (iou + bg_iou) / 2}


def run(
    images: str = "../shared/data/glas/train/images",
    labels: str = "../shared/data/glas/train/labels_binary",
    out: str = "bench/results/glas_tissue",
    ckpt_path: str | None = None,
    pred_dir: str = "bench/runs/glas_tissue/dcgn_tissue",
    per_image: str | None = None,
) -> str:
    """Segment every tile with DCGN's tissue mode (shipped checkpoint unless ``ckpt_path``) into ``pred_dir`` (kept
    out of the results: 85 tiles of maps; finished tiles are reused) and with k-means in optical density, apply
    :func:`gland_mask` to both, score against the labels and write ``glas_tissue.md`` / ``.json`` into ``out``.
    ``per_image``: the data set's ``per_image.csv``; its ``grade_glas`` column (benign / malignant, metadata, not a
    label of any pixel) splits the scores by grade."""
    out_dir = Path(out)
    pred = Path(pred_dir)
    configs = REPO / "bundles" / "dcgn" / "configs"
    args = ["--config_file", f"['{configs / 'inference.json'}','{configs / 'tissue.json'}']"]
    args += ["--bundle_root", str(configs.parent), "--dataset_dir", str(Path(images).resolve())]
    args += ["--output_dir", str(pred.resolve()), "--skip_existing", "True"]
    if ckpt_path:
        args += ["--ckpt_path", str(Path(ckpt_path).resolve())]
    paths = list_images(images)
    reused = sum((pred / f"{path.stem}_seg.png").is_file() for path in paths)
    secs = run_monai_bundle(args, out_dir / "dcgn_tissue.log")
    legend = json.loads((pred / "tissue_legend.json").read_text())["classes"]
    k = len(legend)
    rows, timings = [], {"dcgn_seconds_per_image": secs / max(len(paths), 1), "kmeans_seconds": []}
    for path in tqdm(paths, desc="glas", unit="image"):
        gt = np.asarray(Image.open(Path(labels) / f"{path.stem}.png")) > 0
        dcgn = np.asarray(Image.open(pred / f"{path.stem}_seg.png")).astype(np.int64)
        t0 = time.perf_counter()
        rgb = load_rgb(path)
        km = kmeans_od_classes(rgb, k)
        timings["kmeans_seconds"].append(time.perf_counter() - t0)
        row = {"image": path.stem}
        tissue = tissue_mask(rgb)
        for name, classes in (("dcgn", dcgn), ("kmeans_od", km)):
            s = _scores(gt, gland_mask(classes, k))
            row.update({f"{name}_{m}": v for m, v in s.items()})
            row.update({f"{name}_rings_{m}": v for m, v in _scores(gt, ring_gland_mask(classes, k)).items()})
            composition = composition_gland_mask(classes, k, tissue)
            row.update({f"{name}_composition_{m}": v for m, v in _scores(gt, composition).items()})
            row[f"{name}_rich_fraction"] = float((classes == k - 1).mean())
        # baselines that need no classes: every pixel a gland, and every tissue pixel a gland
        row.update({f"whole_tile_{m}": v for m, v in _scores(gt, np.ones_like(gt)).items()})
        row.update({f"tissue_{m}": v for m, v in _scores(gt, tissue).items()})
        stains = stain_composition_gland_mask(rgb, tissue)
        row.update({f"stain_composition_{m}": v for m, v in _scores(gt, stains).items()})
        rows.append(row)
    mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key != "image"}
    lines = [
        "# DCGN tissue mode on GlaS train (85 colon tiles, binary gland labels used only to score)",
        "",
        "`python -m bench.glas_tissue --images ../shared/data/glas/train/images "
        f"--labels ../shared/data/glas/train/labels_binary --out {out}"
        + (f" --ckpt_path {ckpt_path}" if ckpt_path else "")
        + (f" --per_image {per_image}`" if per_image else "`"),
        "",
        f"Classes (K = {k}, named by increasing haematoxylin): "
        + "; ".join(f"{e['class']} = {e['name']}" for e in legend)
        + ". Gland rule (label-free, fixed before scoring): haematoxylin-rich class, closed with a 3 µm disc, holes "
        "filled, components under 400 µm² dropped.",
        "",
        "| method | gland Dice | gland IoU | mIoU (gland, non-gland) | haematoxylin-rich share | s / tile |",
        "|---|---|---|---|---|---|",
        f"| DCGN tissue mode ({'the --ckpt_path checkpoint' if ckpt_path else 'shipped checkpoint'}) "
        f"| {mean['dcgn_dice']:.3f} | {mean['dcgn_iou']:.3f} | {mean['dcgn_miou']:.3f} | "
        f"{mean['dcgn_rich_fraction']:.3f} | "
        + (f"{timings['dcgn_seconds_per_image']:.2f} (whole run) |" if not reused else f"– ({reused} tiles reused) |"),
        f"| k-means k = {k} in optical density | {mean['kmeans_od_dice']:.3f} | {mean['kmeans_od_iou']:.3f} | "
        f"{mean['kmeans_od_miou']:.3f} | {mean['kmeans_od_rich_fraction']:.3f} | "
        f"{np.mean(timings['kmeans_seconds']):.2f} |",
        f"| DCGN tissue mode, ring rule | {mean['dcgn_rings_dice']:.3f} | {mean['dcgn_rings_iou']:.3f} | "
        f"{mean['dcgn_rings_miou']:.3f} | | |",
        f"| k-means k = {k} in optical density, ring rule | {mean['kmeans_od_rings_dice']:.3f} | "
        f"{mean['kmeans_od_rings_iou']:.3f} | {mean['kmeans_od_rings_miou']:.3f} | | |",
        f"| DCGN tissue mode, composition rule | {mean['dcgn_composition_dice']:.3f} | "
        f"{mean['dcgn_composition_iou']:.3f} | {mean['dcgn_composition_miou']:.3f} | | |",
        f"| k-means k = {k} in optical density, composition rule | {mean['kmeans_od_composition_dice']:.3f} | "
        f"{mean['kmeans_od_composition_iou']:.3f} | {mean['kmeans_od_composition_miou']:.3f} | | |",
        f"| stain composition (classic baseline, no classes) | {mean['stain_composition_dice']:.3f} | "
        f"{mean['stain_composition_iou']:.3f} | {mean['stain_composition_miou']:.3f} | | |",
        f"| every pixel a gland (no classes) | {mean['whole_tile_dice']:.3f} | {mean['whole_tile_iou']:.3f} | "
        f"{mean['whole_tile_miou']:.3f} | | |",
        f"| every tissue pixel a gland (`tissue_mask`, no classes) | {mean['tissue_dice']:.3f} | "
        f"{mean['tissue_iou']:.3f} | {mean['tissue_miou']:.3f} | | |",
        "",
        "Ring rule (`ring_gland_mask`, `bench/results/glas_rings/rule.txt`): bands of the haematoxylin-rich class "
        "opened with a 4 µm disc, compact pale cores (opened alike, solidity ≥ 0.85) whose 3 µm ring is ≥ 0.6 "
        "haematoxylin-rich, the haematoxylin-rich walls within 10 µm of them; closed, filled, small ones dropped.",
        "",
        "Composition rule (`composition_gland_mask`, `bench/results/glas_composition/rule.txt`): each class's share "
        "around a pixel (Gaussian, sigma 10 µm), two k-means clusters over the tissue pixels, the one with the lower "
        "eosin-rich share as glands; filled, small ones dropped.",
        "",
        "Stain composition (`stain_composition_gland_mask`, `bench/results/glas_stain_composition/rule.txt`): the "
        "tile's haematoxylin and eosin concentrations around a pixel (Gaussian, sigma 10 µm), two k-means clusters "
        "over the tissue pixels, the one with the lower eosin as glands; closed (3 µm), filled, small ones dropped.",
        "",
    ]
    if per_image:
        with open(per_image, newline="") as f:
            lines += grade_table(rows, {r["name"]: r["grade_glas"] for r in csv.DictReader(f)}) + [""]
    report = "\n".join(lines)
    save_text(out_dir / "glas_tissue.md", report)
    save_text(out_dir / "glas_tissue.json", json.dumps({"mean": mean, "per_image": rows}, indent=1) + "\n")
    print(report)
    return str(out_dir / "glas_tissue.md")


if __name__ == "__main__":
    fire.Fire(run)
