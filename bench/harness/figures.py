"""Figures of the comparison: box plots of per-run mean Dice and AJI, error overlays as in the papers, and instance
outlines side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from labelfree.core.imageio import atomic_path, find_label, load_instance_map, load_rgb
from labelfree.core.overlay import contour_overlay, error_overlay

__all__ = ["boxplot", "contour_grid", "overlay_grid"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no screen here, and none needed
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` as a PNG atomically and close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def boxplot(per_seed: dict[str, dict[str, dict[int, float]]], methods: Sequence[str], path: Path) -> Path:
    """Box plot of per-run mean Dice and AJI for every method.

    Args:
        per_seed: ``{metric: {method: {seed: mean}}}`` for ``"dice"`` and ``"aji"``.
        methods: plotting order (methods without runs are left out).
        path: PNG written atomically.
    """
    plt = _pyplot()
    shown = [m for m in methods if per_seed["dice"].get(m)]
    fig, axes = plt.subplots(2, 1, figsize=(max(6, 0.9 * len(shown) + 2), 7), squeeze=False)
    for ax, metric in zip(axes[:, 0], ("dice", "aji")):
        data = [list(per_seed[metric].get(m, {}).values()) for m in shown]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(shown) + 1), shown, rotation=30, ha="right")
        ax.set_title(f"per-run mean {metric.upper() if metric == 'aji' else metric.capitalize()}")
        ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path)


def overlay_grid(images: Sequence[Path], labels: Path, preds: dict[str, Path], path: Path, max_side: int = 400) -> Path:
    """One row per image, one column per method: true positives green, false positives yellow, false negatives red.

    Args:
        images: the tiles to show.
        labels: folder of instance labels named like the tiles.
        preds: ``{method: prediction folder}`` holding ``<stem>_inst.tif``.
        path: PNG written atomically.
        max_side: tiles are shown downsampled to at most this many pixels a side.
    """
    plt = _pyplot()
    methods = list(preds)
    fig, axes = plt.subplots(
        len(images), len(methods) + 1, figsize=(2.6 * (len(methods) + 1), 2.6 * len(images)), squeeze=False
    )
    for i, img_path in enumerate(images):
        rgb = load_rgb(img_path)
        step = max(1, int(np.ceil(max(rgb.shape[:2]) / max_side)))
        gt = load_instance_map(find_label(labels, img_path))
        axes[i][0].imshow(rgb[::step, ::step])
        axes[i][0].set_ylabel(img_path.stem[:20], fontsize=7)
        for j, method in enumerate(methods, start=1):
            inst_path = preds[method] / f"{img_path.stem}_inst.tif"
            if inst_path.is_file():
                axes[i][j].imshow(error_overlay(rgb, tifffile.imread(inst_path), gt)[::step, ::step])
            if i == 0:
                axes[i][j].set_title(method, fontsize=9)
        if i == 0:
            axes[i][0].set_title("image", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("green: true positive, yellow: false positive, red: false negative", fontsize=9)
    return _save(plt, fig, path)


def contour_grid(
    images: Sequence[Path], labels: Path, preds: dict[str, Path], path: Path, crop: int | None = None
) -> Path:
    """One row per image: the labelled nuclei's outlines, then each prediction's, every instance outlined on its own,
    so that a nucleus cut in two or two nuclei run together can be seen (pixel error overlays do not show either).

    Args:
        images: the tiles to show.
        labels: folder of instance labels named like the tiles.
        preds: ``{name: prediction folder}`` holding ``<stem>_inst.tif``.
        path: PNG written atomically.
        crop: show the central ``crop × crop`` pixels at full resolution (``None``: the whole tile).
    """
    plt = _pyplot()
    names = ["labels", *preds]
    fig, axes = plt.subplots(len(images), len(names), figsize=(3.2 * len(names), 3.2 * len(images)), squeeze=False)
    for i, img_path in enumerate(images):
        rgb = load_rgb(img_path)
        maps = [load_instance_map(find_label(labels, img_path))]
        maps += [tifffile.imread(preds[n] / f"{img_path.stem}_inst.tif") for n in preds]
        h, w = rgb.shape[:2]
        y0, x0 = (max(0, (h - crop) // 2), max(0, (w - crop) // 2)) if crop else (0, 0)
        y1, x1 = (y0 + crop, x0 + crop) if crop else (h, w)
        for j, (name, inst) in enumerate(zip(names, maps)):
            axes[i][j].imshow(contour_overlay(rgb[y0:y1, x0:x1], inst[y0:y1, x0:x1]))
            n_obj = int(np.count_nonzero(np.unique(inst[y0:y1, x0:x1])))
            axes[i][j].set_title(f"{name}: {n_obj} objects" if i == 0 else f"{n_obj} objects", fontsize=8)
        axes[i][0].set_ylabel(img_path.stem[:20], fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(plt, fig, path)
