"""Benchmark: does a method say "almost nothing here"? Predicted against labelled nucleus area in sparse regions.

Issue 17 bounds each tile's predicted / true nucleus area at 1.5 because of tiles with few nuclei, where a colour
rule still outlines its share of dark pixels. The labelled sets have no such tile, but every tile has sparse regions
(stroma, fat, vessel walls). Each tile is cut into square blocks of ``block_um`` µm (the tile's magnification gives
the pixels: 40× is 0.25 µm a pixel); a block is *empty* when no labelled nucleus covers it, *sparse* when labelled
nuclei cover less than ``sparse_fraction`` of it, *dense* otherwise. For each method, pooled over the blocks of a
class: predicted / labelled nucleus area, the share of sparse blocks predicted above 1.5× their labelled area, and
the predicted share of the empty blocks. Definitions fixed before any figure: ``bench/results/sparse_regions/rule.txt``.
Labels are read only to measure.

    python -m bench.sparse_regions --labels ../shared/data/cpm15/train/labels \\
        --preds '{"ssimnet": ["RUNS/seed0/pred", ...], "otsu_ws": ["RUNS2/pred"]}' \\
        --per_image ../shared/data/cpm15/per_image.csv --out bench/results/sparse_regions --name cpm15
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import fire
import numpy as np

from bench.by_magnification import tile_magnifications, um_per_pixel
from bench.report_files import save_report
from labelfree.core.imageio import find_label, load_instance_map, load_rgb, save_png
from labelfree.core.overlay import error_overlay

#: issue 17's bound on predicted / true nucleus area
AREA_BOUND = 1.5
CLASSES = ("empty", "sparse", "dense")


def block_areas(truth: np.ndarray, pred: np.ndarray, block: int) -> np.ndarray:
    """``(n_blocks, 2)``: labelled and predicted foreground pixels of each whole ``block`` × ``block`` square.

    Args:
        truth, pred: ``(H, W)`` masks (any nonzero is foreground), the same shape.
        block: side in pixels; the strips the tile's edges cut short are left out.
    """
    if truth.shape != pred.shape:
        raise ValueError(f"label {truth.shape} and prediction {pred.shape} differ in shape")
    h, w = (s // block * block for s in truth.shape)
    if h == 0 or w == 0:
        return np.zeros((0, 2), np.int64)

    def sums(mask: np.ndarray) -> np.ndarray:
        m = (mask[:h, :w] != 0).reshape(h // block, block, w // block, block)
        return m.sum(axis=(1, 3), dtype=np.int64).ravel()

    return np.stack([sums(truth), sums(pred)], axis=1)


def classify(areas: np.ndarray, sparse_fraction: float) -> np.ndarray:
    """Each block's class index into :data:`CLASSES`; ``areas``: ``(n_blocks, 3)`` labelled, predicted and all pixels."""
    share = areas[:, 0] / areas[:, 2]
    return np.where(areas[:, 0] == 0, 0, np.where(share < sparse_fraction, 1, 2))


def summarise_blocks(areas: np.ndarray, classes: np.ndarray) -> dict[str, dict[str, float]]:
    """Per class: block count, pooled predicted / labelled area, and (sparse) the share above :data:`AREA_BOUND` or
    (empty) the predicted foreground share. ``areas``: ``(n_blocks, 3)`` labelled, predicted and all pixels (blocks
    of tiles at different magnifications have different pixel counts; their pixels are pooled)."""
    out: dict[str, dict[str, float]] = {}
    for k, name in enumerate(CLASSES):
        a = areas[classes == k]
        row: dict[str, float] = {"blocks": int(len(a))}
        if name == "empty":
            row["predicted_share"] = float(a[:, 1].sum() / a[:, 2].sum()) if len(a) else float("nan")
        else:
            row["area_ratio"] = float(a[:, 1].sum() / a[:, 0].sum()) if len(a) else float("nan")
            if name == "sparse":
                row["above_bound"] = float(np.mean(a[:, 1] > AREA_BOUND * a[:, 0])) if len(a) else float("nan")
        out[name] = row
    return out


def _pred_path(folder: Path, stem: str) -> Path:
    path = folder / f"{stem}_inst.tif"
    if not path.is_file():
        raise FileNotFoundError(f"no prediction {path.name} in {folder}")
    return path


def run(
    labels: str,
    preds: Mapping[str, Sequence[str]],
    out: str = "bench/results/sparse_regions",
    name: str = "sparse_regions",
    per_image: str | None = None,
    block_um: float = 64.0,
    sparse_fraction: float = 0.05,
    figure_blocks: int = 8,
    images: str | None = None,
) -> dict:
    """Measure every method's predictions (``{method: [prediction folder per seed]}``, each holding
    ``<stem>_inst.tif`` per labelled tile) against the labels; write ``<out>/<name>.md`` and ``.json``.

    Args:
        labels: folder of instance label maps, one per tile.
        preds: method → prediction folders (one per training seed; the figures are the seeds' mean ± std).
        per_image: the data set's CSV with ``name`` and ``magnification`` columns; ``None``: every tile at 40×.
        block_um: block side in µm.
        sparse_fraction: a block with labelled nuclei on less than this share of its pixels is sparse.
        figure_blocks: how many sparse blocks the figure shows (the first method's first folder; 0: no figure).
        images: the tiles, for the figure; ``None``: the ``images`` folder beside ``labels``.
    """
    folders = {m: [Path(f) for f in ([f] if isinstance(f, str) else f)] for m, f in preds.items()}
    label_files = sorted(p for p in Path(labels).iterdir() if p.is_file() and not p.name.startswith("."))
    stems = sorted({p.stem for p in label_files})
    mags = tile_magnifications(per_image, label_files) if per_image else {s: 40.0 for s in stems}
    blocks = {s: int(round(block_um / um_per_pixel(mags[s]))) for s in stems}
    # the labels once: every prediction folder is measured against the same masks
    truths = {s: load_instance_map(find_label(labels, Path(s + ".png"))) != 0 for s in stems}
    result: dict = {"blocks_um": block_um, "sparse_fraction": sparse_fraction, "methods": {}, "block_pixels": blocks}
    first_areas: dict[str, np.ndarray] = {}
    for method, dirs in folders.items():
        per_seed = []
        for folder in dirs:
            areas = {
                s: _sized_block_areas(truths[s], load_instance_map(_pred_path(folder, s)), blocks[s]) for s in stems
            }
            first_areas = first_areas or areas
            pooled = np.concatenate(list(areas.values()))
            per_seed.append(summarise_blocks(pooled, classify(pooled, sparse_fraction)))
        result["methods"][method] = _mean_std(per_seed)
    lines = [
        f"Blocks of {block_um:g} µm; sparse: labelled nuclei on less than {100 * sparse_fraction:g} % of a block; "
        f"empty: on none of it. Labels read only to measure. `python -m bench.sparse_regions --labels {labels}"
        + (f" --per_image {per_image}" if per_image else "")
        + f" --block_um {block_um:g} --name {name}` (prediction folders in `{name}.json`).",
        "",
        "| method (seeds) | blocks empty / sparse / dense | predicted / true area, sparse blocks | sparse blocks "
        f"above {AREA_BOUND:g}× | predicted / true area, dense blocks | predicted share of empty blocks |",
        "|---|---|---|---|---|---|",
    ]
    for method, r in result["methods"].items():
        m, s = r["mean"], r["std"]

        def cell(cls: str, key: str, pct: bool = False) -> str:
            if not m[cls]["blocks"]:
                return "–"
            f = 100.0 if pct else 1.0
            unit = " %" if pct else ""
            return (
                f"{f * m[cls][key]:.2f}{unit} ± {f * s[cls][key]:.2f}"
                if r["seeds"] > 1
                else f"{f * m[cls][key]:.2f}{unit}"
            )

        lines.append(
            f"| {method} ({r['seeds']}) | {m['empty']['blocks']:.0f} / {m['sparse']['blocks']:.0f} / "
            f"{m['dense']['blocks']:.0f} | {cell('sparse', 'area_ratio')} | {cell('sparse', 'above_bound', True)} | "
            f"{cell('dense', 'area_ratio')} | {cell('empty', 'predicted_share', True)} |"
        )
    if figure_blocks:
        first = next(iter(folders))
        folder = folders[first][0]
        png = Path(out) / f"{name}_sparse_blocks.png"
        image_dir = Path(images) if images else Path(labels).parent / "images"
        shown = sparse_block_figure(image_dir, folder, truths, first_areas, blocks, sparse_fraction, figure_blocks, png)
        result["figure"] = {"method": first, "folder": str(folder), "blocks": shown}
        lines += [
            "",
            f"`{png.name}`: the {len(shown)} sparse blocks where `{first}` ({folder.parent.name}) predicts the most "
            "pixels beyond the labelled ones; each the tile's block beside its errors (green: both, yellow: predicted "
            "only, red: labelled only).",
        ]
    result["preds"] = {m: [str(f) for f in dirs] for m, dirs in folders.items()}
    save_report(out, name, result, "\n".join(lines) + "\n")
    return result


def _sized_block_areas(truth: np.ndarray, pred: np.ndarray, block: int) -> np.ndarray:
    """:func:`block_areas` with a third column, each block's pixel count (``block``²), as :func:`classify` and
    :func:`summarise_blocks` read them."""
    a = block_areas(truth, pred, block)
    return np.column_stack([a, np.full(len(a), block * block, np.int64)])


def sparse_block_figure(
    images: Path,
    folder: Path,
    truths: Mapping[str, np.ndarray],
    areas: Mapping[str, np.ndarray],
    blocks: Mapping[str, int],
    sparse_fraction: float,
    n: int,
    png: Path,
) -> list[dict]:
    """Write ``png``: the ``n`` sparse blocks with the most predicted pixels beyond the labelled ones, one row each
    (the block, and its :func:`~labelfree.core.overlay.error_overlay`), every block shown at 256 px; returns them.

    Args:
        images: the tiles' folder.
        folder: the prediction folder ``areas`` were measured on.
        truths, areas, blocks: per tile stem, its labelled mask, its :func:`_sized_block_areas` and its block side.
    """
    from PIL import Image

    candidates = []
    for stem, a in areas.items():
        block = blocks[stem]
        cols = truths[stem].shape[1] // block
        for i in np.flatnonzero(classify(a, sparse_fraction) == 1):
            excess = int(a[i, 1] - a[i, 0])
            candidates.append((excess, stem, int(i // cols) * block, int(i % cols) * block, block))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2], c[3]))
    rows, shown = [], []
    for excess, stem, y, x, block in candidates[:n]:
        tile = sorted(p for p in images.glob(stem + ".*") if p.is_file())
        if not tile:
            raise FileNotFoundError(f"no image {stem}.* in {images} for the figure")
        rgb = load_rgb(tile[0])[y : y + block, x : x + block]
        truth = truths[stem][y : y + block, x : x + block]
        pred = load_instance_map(_pred_path(folder, stem))[y : y + block, x : x + block]
        pair = np.concatenate([rgb, np.full((block, 4, 3), 255, np.uint8), error_overlay(rgb, pred, truth)], axis=1)
        rows.append(np.asarray(Image.fromarray(pair).resize((2 * 256 + 4, 256), Image.NEAREST)))
        shown.append({"tile": stem, "y": y, "x": x, "block": block, "excess_pixels": excess})
    if rows:
        gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
        save_png(png, np.concatenate([r for row in rows for r in (row, gap)][:-1], axis=0))
    return shown


def _mean_std(per_seed: list[dict[str, dict[str, float]]]) -> dict:
    """The seeds' mean and sample std of every figure (std 0 for one seed)."""
    keys = [(c, k) for c in per_seed[0] for k in per_seed[0][c]]
    mean: dict = {c: {} for c in per_seed[0]}
    std: dict = {c: {} for c in per_seed[0]}
    for c, k in keys:
        v = np.array([r[c][k] for r in per_seed], np.float64)
        mean[c][k] = float(v.mean())
        std[c][k] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"seeds": len(per_seed), "mean": mean, "std": std}


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
