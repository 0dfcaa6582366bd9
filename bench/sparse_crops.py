"""Benchmark: the sparse parts of labelled tiles segmented as tiles of their own, against the same pixels in context.

Issue 17's worst case is a tile with few nuclei, where every per-tile step (a stain estimate, rules relative to the
tile's median object) has little to go by. The labelled sets have no such tile, so ``make`` cuts each tile into a grid
of ``crop``-pixel squares and keeps those where labelled nuclei cover under ``max_fraction`` (the labels choose which
crops are measured; no method reads them). The comparison harness segments the crops as tiles; ``context`` cuts a
whole-tile prediction folder to the same crops; ``table`` compares, per method, the predicted with the labelled nucleus
area and object count, alone and in context. Plan: ``bench/results/sparse_crops/plan.md``.

    python -m bench.sparse_crops make --images ../shared/data/monuseg/train/images \\
        --labels ../shared/data/monuseg/train/labels --out /tmp/sparse_crops/monuseg
    python -m bench.harness compare --images /tmp/sparse_crops/monuseg/images --labels /tmp/sparse_crops/monuseg/labels \\
        --methods ssimnet_shipped,otsu_ws --seeds 1 --out bench/results/sparse_crops/monuseg/alone
    python -m bench.sparse_crops context --crops /tmp/sparse_crops/monuseg/crops.csv --pred WHOLE_TILE_PRED \\
        --out /tmp/sparse_crops/monuseg/context/ssimnet_shipped
    python -m bench.sparse_crops table --labels /tmp/sparse_crops/monuseg/labels \\
        --preds '{"ssimnet_shipped alone": "RUNS/.../pred", "ssimnet_shipped in context": "/tmp/.../ssimnet_shipped"}' \\
        --out bench/results/sparse_crops --name monuseg
    python -m bench.sparse_crops figure --images /tmp/sparse_crops/monuseg/images --labels /tmp/sparse_crops/monuseg/labels \
        --preds '{"alone": "RUNS/.../pred", "in context": "/tmp/.../ssimnet_shipped"}' \
        --out bench/results/sparse_crops/monuseg_ssimnet_outlines.png
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

import fire
import numpy as np

from bench.report_files import save_report
from bench.sparse_regions import AREA_BOUND
from labelfree.core.imageio import find_label, list_images, load_instance_map, load_rgb, save_png, save_text, save_tiff
from labelfree.core.metrics import aji


def crop_name(stem: str, y: int, x: int) -> str:
    """The file stem of the crop of tile ``stem`` whose top-left pixel is ``(y, x)``."""
    return f"{stem}_y{y}_x{x}"


def make(images: str, labels: str, out: str, crop: int = 256, max_fraction: float = 0.10) -> Path:
    """Write ``out/images/<crop>.png``, ``out/labels/<crop>.tif`` and ``out/crops.csv`` (crop, tile, y, x, size,
    labelled fraction) for every ``crop``-pixel grid square, from each tile's top-left corner, that labelled nuclei cover
    under ``max_fraction`` of. A tile that cannot be read, or whose labels differ from it in size, is skipped with one
    line.

    Returns:
        ``out``.
    """
    rows = [["crop", "tile", "y", "x", "size", "labelled_fraction"]]
    for path in list_images(images):
        try:
            rgb = load_rgb(path)
            inst = load_instance_map(find_label(labels, path.name))
            if inst.shape != rgb.shape[:2]:
                raise ValueError(f"{path.name}: labels {inst.shape} and image {rgb.shape[:2]} differ in size")
        except (OSError, ValueError) as err:  # one line for a tile that cannot be cut; the others still are
            print(f"skipped: {err}")
            continue
        for y in range(0, rgb.shape[0] - crop + 1, crop):
            for x in range(0, rgb.shape[1] - crop + 1, crop):
                part = inst[y : y + crop, x : x + crop]
                fraction = float((part > 0).mean())
                if fraction >= max_fraction:
                    continue
                name = crop_name(path.stem, y, x)
                save_png(Path(out) / "images" / f"{name}.png", np.ascontiguousarray(rgb[y : y + crop, x : x + crop]))
                save_tiff(Path(out) / "labels" / f"{name}.tif", part.astype(np.uint16))
                rows.append([name, path.stem, str(y), str(x), str(crop), f"{fraction:.4f}"])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    save_text(Path(out) / "crops.csv", buf.getvalue())
    print(f"{len(rows) - 1} crops under {max_fraction:.0%} labelled nuclei written to {out}")
    return Path(out)


def context(crops: str, pred: str, out: str) -> Path:
    """Cut the whole-tile instance maps ``pred/<tile>_inst.tif`` to the crops listed in ``crops`` (``crops.csv``):
    ``out/<crop>_inst.tif``. Returns ``out``."""
    with open(crops, newline="") as f:
        listed = list(csv.DictReader(f))
    maps: dict[str, np.ndarray] = {}
    for row in listed:
        tile = row["tile"]
        if tile not in maps:
            maps[tile] = load_instance_map(Path(pred) / f"{tile}_inst.tif")
        y, x, size = int(row["y"]), int(row["x"]), int(row["size"])
        part = maps[tile][y : y + size, x : x + size]
        save_tiff(Path(out) / f"{row['crop']}_inst.tif", np.ascontiguousarray(part).astype(np.uint32))
    print(f"{len(listed)} crops cut from {pred} into {out}")
    return Path(out)


def crop_scores(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Labelled and predicted nucleus area and object count of one crop, and its AJI."""
    return {
        "true_area": float((gt > 0).sum()),
        "pred_area": float((pred > 0).sum()),
        "true_objects": float(len(np.unique(gt[gt > 0]))),
        "pred_objects": float(len(np.unique(pred[pred > 0]))),
        "aji": float(aji(gt, pred)),
    }


def table(
    labels: str, preds: str | Mapping[str, str], out: str = "bench/results/sparse_crops", name: str = "table"
) -> str:
    """Per named prediction folder (``{name: folder}`` of ``<crop>_inst.tif``, JSON on the command line), over the crops
    in ``labels``: pooled predicted / labelled nucleus area, the worst crop's ratio (crops with labelled nuclei), the
    share of those above :data:`AREA_BOUND`, pooled predicted / labelled object count, and mean AJI. Written to
    ``out/<name>.md`` and ``.json``; returns the path of the first."""
    import json

    folders = json.loads(preds) if isinstance(preds, str) else dict(preds)
    crops = [p.stem for p in sorted(Path(labels).glob("*.tif"))]
    if not crops:
        raise SystemExit(f"no crops in {labels}")
    lines = [
        f"# Sparse crops as tiles of their own ({len(crops)} crops, `{labels}`)",
        "",
        "| prediction | predicted / labelled area (pooled) | worst crop | crops over 1.5 | predicted / labelled "
        "objects | mean AJI |",
        "|---|---|---|---|---|---|",
    ]
    truth = {crop: load_instance_map(Path(labels) / f"{crop}.tif") for crop in crops}
    result: dict[str, dict] = {}
    for label, folder in folders.items():
        per = {
            crop: crop_scores(gt, load_instance_map(Path(folder) / f"{crop}_inst.tif")) for crop, gt in truth.items()
        }
        with_nuclei = [s for s in per.values() if s["true_area"] > 0]
        ratios = [s["pred_area"] / s["true_area"] for s in with_nuclei]
        total = {k: sum(s[k] for s in per.values()) for k in ("true_area", "pred_area", "true_objects", "pred_objects")}
        summary = {
            "area_ratio": total["pred_area"] / max(total["true_area"], 1.0),
            "worst_ratio": max(ratios) if ratios else float("nan"),
            "share_over_bound": float(np.mean([r > AREA_BOUND for r in ratios])) if ratios else float("nan"),
            "object_ratio": total["pred_objects"] / max(total["true_objects"], 1.0),
            "aji": float(np.mean([s["aji"] for s in per.values()])),
            "crops": len(per),
        }
        result[label] = {"summary": summary, "per_crop": per}
        lines.append(
            f"| {label} | {summary['area_ratio']:.2f} | {summary['worst_ratio']:.2f} | "
            f"{summary['share_over_bound']:.0%} | {summary['object_ratio']:.2f} | {summary['aji']:.3f} |"
        )
    save_report(out, name, result, "\n".join(lines) + "\n")
    return str(Path(out) / f"{name}.md")


def figure(images: str, labels: str, preds: str | Mapping[str, str], out: str, n: int = 5) -> str:
    """The labels' outlines and each prediction's on the ``n`` crops where the first prediction of ``preds`` (``{name:
    folder}``, JSON on the command line) calls the most nucleus area per labelled area (crops without labelled nuclei
    first); written to ``out``, which is returned."""
    import json

    from bench.harness.figures import contour_grid

    folders = {k: Path(v) for k, v in (json.loads(preds) if isinstance(preds, str) else dict(preds)).items()}
    first = next(iter(folders.values()))
    ratio = {}
    for path in list_images(images):
        s = crop_scores(
            load_instance_map(find_label(labels, path.name)), load_instance_map(first / f"{path.stem}_inst.tif")
        )
        ratio[path] = s["pred_area"] / s["true_area"] if s["true_area"] else float("inf")
    worst = sorted(ratio, key=lambda p: (-ratio[p], p.name))[:n]
    if not worst:
        raise SystemExit(f"no crops in {images}")
    return str(contour_grid(worst, Path(labels), folders, Path(out)))


if __name__ == "__main__":
    fire.Fire({"make": make, "context": context, "table": table, "figure": figure})
