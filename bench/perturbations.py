"""Benchmark: the bundles on tiles changed as another scanner or lab would change them.

Each condition is a deterministic change of a labelled tile set's images that leaves every pixel where it was, so the
instance labels stay valid: JPEG compression, defocus, faded or heavy stains, a washed-out scan, sensor noise. Stains
are scaled in Ruifrok–Johnston HED optical density (the vectors :mod:`labelfree.transforms.stain_augment` jitters
along), so the glass stays white. ``make`` writes one folder of PNG tiles per condition; the comparison harness scores
each against the set's own labels (read only to score); ``table`` puts the conditions side by side.

    python -m bench.perturbations make --images ../shared/data/monuseg/train/images --out /tmp/perturbed/monuseg
    python -m bench.harness compare --images /tmp/perturbed/monuseg/jpeg_q70 \\
        --labels ../shared/data/monuseg/train/labels --methods ssimnet_shipped,dcgn_shipped,otsu_ws --seeds 1 \\
        --out bench/results/perturbations/monuseg/jpeg_q70
    python -m bench.perturbations table --root bench/results/perturbations
    python -m bench.perturbations examples --images ../shared/data/monuseg/train/images --perturbed /tmp/perturbed/monuseg \
        --runs RUNS --tile TCGA-18-5592-01Z-00-DX1 --out bench/results/perturbations/monuseg_examples.png

``RUNS`` holds each condition's harness runs as ``RUNS/<condition>/ssimnet_shipped/seed0*/pred`` (``--runs
RUNS/<condition>`` when the harness ran it).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from pathlib import Path

import fire
import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from tqdm import tqdm

from bench.harness.results_csv import read_results_csv
from bench.report_files import save_report
from bench.signed_rank import signed_rank_p
from labelfree.core.imageio import InvalidImageError, list_images, load_rgb, save_png
from labelfree.transforms.stain import optical_density
from labelfree.transforms.stain_augment import HED_FROM_RGB_STAINS

#: the reference the conditions are compared with: the unchanged tiles
CLEAN = "clean"


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """The tile after a JPEG round trip at ``quality`` (Pillow's default 4:2:0 chroma subsampling)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Each channel blurred by a Gaussian of ``sigma`` pixels (defocus), rounded back to uint8."""
    out = ndi.gaussian_filter(rgb.astype(np.float32), sigma=(sigma, sigma, 0), mode="reflect")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def scale_stains(rgb: np.ndarray, haematoxylin: float = 1.0, eosin: float = 1.0, residual: float = 1.0) -> np.ndarray:
    """The tile with each HED stain concentration multiplied by its factor (glass, at zero density, stays white).

    Args:
        rgb: ``(H, W, 3)`` uint8.
        haematoxylin, eosin, residual: factors of the three Ruifrok–Johnston concentrations.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    od = optical_density(rgb).reshape(-1, 3).astype(np.float64)
    conc = od @ np.linalg.inv(HED_FROM_RGB_STAINS)
    conc *= np.array([haematoxylin, eosin, residual])
    out = 255.0 * np.exp(-(conc @ HED_FROM_RGB_STAINS))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(rgb.shape)


def noise(rgb: np.ndarray, sigma: float, key: str) -> np.ndarray:
    """Gaussian noise of ``sigma`` grey levels, drawn from a generator seeded by ``key`` (the tile's name), so the
    same tile always gets the same noise."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    out = rgb.astype(np.float32) + rng.normal(0.0, sigma, rgb.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


#: condition name → change of one tile (``rgb``, the tile's stem)
CONDITIONS: dict[str, Callable[[np.ndarray, str], np.ndarray]] = {
    "jpeg_q70": lambda rgb, stem: jpeg(rgb, 70),
    "blur_1px": lambda rgb, stem: blur(rgb, 1.0),
    "blur_2px": lambda rgb, stem: blur(rgb, 2.0),
    "haematoxylin_x0.6": lambda rgb, stem: scale_stains(rgb, haematoxylin=0.6),
    "haematoxylin_x1.4": lambda rgb, stem: scale_stains(rgb, haematoxylin=1.4),
    "eosin_x1.6": lambda rgb, stem: scale_stains(rgb, eosin=1.6),
    "pale_x0.75": lambda rgb, stem: scale_stains(rgb, 0.75, 0.75, 0.75),
    "noise_5": lambda rgb, stem: noise(rgb, 5.0, stem),
}


def _names(conditions: str | tuple | None) -> list[str]:
    if conditions is None:
        return list(CONDITIONS)
    names = [c.strip() for c in conditions.split(",")] if isinstance(conditions, str) else [str(c) for c in conditions]
    unknown = [c for c in names if c not in CONDITIONS]
    if unknown:
        raise SystemExit(f"unknown condition(s) {unknown}; known: {', '.join(CONDITIONS)}")
    return names


def make(images: str, out: str, conditions: str | tuple | None = None) -> Path:
    """Write ``out/<condition>/<stem>.png`` for every tile of ``images`` and every condition (all by default, or a
    comma-separated subset); each file is written atomically, and a finished one is written again with the same
    bytes. A tile that cannot be read is skipped with one line.

    Returns:
        ``out``.
    """
    names, paths = _names(conditions), list_images(images)
    if not paths:
        raise SystemExit(f"no images in {images}")
    skipped = 0
    for path in tqdm(paths, desc="perturbing", unit="tile"):
        try:
            rgb = load_rgb(path)
        except InvalidImageError as err:  # one line for a bad tile; the others are still written
            tqdm.write(f"skipped: {err}")
            skipped += 1
            continue
        for name in names:
            save_png(Path(out) / name / f"{path.stem}.png", CONDITIONS[name](rgb, path.stem))
    print(
        f"{len(paths) - skipped} tiles x {len(names)} conditions written to {out}"
        + (f"; {skipped} skipped" if skipped else "")
    )
    return Path(out)


def _scores(report: Path) -> dict[str, dict[str, dict[str, float]]]:
    """method → tile → {dice, aji, pq} from a harness report's ``results.csv`` (first seed of each method)."""
    return read_results_csv(report / "results.csv", ("dice", "aji", "pq"))


def table(
    root: str = "bench/results/perturbations",
    sets: str | tuple = "monuseg,cpm15",
    lead: str = "ssimnet_shipped",
    baseline: str = "otsu_ws",
) -> str:
    """Per data set, every method's mean Dice / AJI / PQ under each condition found in ``root/<set>/<condition>``
    (harness reports; ``clean`` first), its AJI change from ``clean``, and ``lead``'s AJI against ``baseline``'s on
    the same tiles (mean difference and Wilcoxon signed-rank p). Written to ``root/table.md`` and ``table.json``;
    returns the path of the first."""
    set_names = [s.strip() for s in sets.split(",")] if isinstance(sets, str) else list(sets)
    lines, result = ["# The shipped checkpoints on changed tiles", ""], {}
    for ds in set_names:
        base = Path(root) / ds
        conds = [CLEAN] + [c for c in CONDITIONS if (base / c / "results.csv").is_file()]
        if not (base / CLEAN / "results.csv").is_file():
            raise SystemExit(f"no clean report in {base / CLEAN}")
        reports = {c: _scores(base / c) for c in conds}
        methods = list(reports[CLEAN])
        clean_aji = {m: float(np.mean([t["aji"] for t in reports[CLEAN][m].values()])) for m in methods}
        lines += [f"## {ds}", "", "| condition | " + " | ".join(f"{m} Dice / AJI / PQ (ΔAJI)" for m in methods)]
        lines[-1] += f" | {lead} − {baseline} AJI (p) |"
        lines.append("|---" * (len(methods) + 2) + "|")
        result[ds] = {}
        for c in conds:
            cells, entry = [], {}
            for m in methods:
                tiles = reports[c].get(m, {})
                if not tiles:
                    cells.append("–")
                    continue
                mean = {k: float(np.mean([t[k] for t in tiles.values()])) for k in ("dice", "aji", "pq")}
                entry[m] = mean | {"aji_change": mean["aji"] - clean_aji[m], "tiles": len(tiles)}
                delta = "" if c == CLEAN else f" ({mean['aji'] - clean_aji[m]:+.3f})"
                cells.append(f"{mean['dice']:.3f} / {mean['aji']:.3f} / {mean['pq']:.3f}{delta}")
            a, b = reports[c].get(lead, {}), reports[c].get(baseline, {})
            common = sorted(set(a) & set(b))
            if common:
                x, y = [a[t]["aji"] for t in common], [b[t]["aji"] for t in common]
                entry["lead_minus_baseline_aji"] = float(np.mean(x) - np.mean(y))
                entry["p"] = signed_rank_p(x, y)
                cells.append(f"{entry['lead_minus_baseline_aji']:+.3f} (p = {entry['p']:.2g})")
            else:
                cells.append("–")
            result[ds][c] = entry
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        lines.append("")
    save_report(root, "table", result, "\n".join(lines))
    return str(Path(root) / "table.md")


def examples(
    images: str,
    perturbed: str,
    runs: str,
    tile: str,
    out: str,
    method: str = "ssimnet_shipped",
    crop: int = 256,
) -> str:
    """One tile's central ``crop`` pixels, clean and under every condition found in ``perturbed``, each with the
    outlines ``method`` drew on it (green; its harness runs under ``runs``: ``runs/clean`` and ``runs/<condition>``),
    written as one figure to ``out``; returns ``out``."""
    from bench.harness.figures import _pyplot, _save
    from labelfree.core.imageio import load_instance_map
    from labelfree.core.overlay import contour_overlay

    conds = [CLEAN] + [c for c in CONDITIONS if (Path(perturbed) / c).is_dir()]
    panels = []
    for c in conds:
        folder = Path(images) if c == CLEAN else Path(perturbed) / c
        preds = sorted(Path(runs).glob(f"{c}/{method}/seed0*/pred"))
        if not preds:
            raise SystemExit(f"no {method} run for {c} under {runs}")
        found = [p for p in list_images(folder) if p.stem == tile]
        if not found:
            raise SystemExit(f"no tile {tile} in {folder}")
        rgb = load_rgb(found[0])
        inst = load_instance_map(preds[0] / f"{tile}_inst.tif")
        y, x = max(0, (rgb.shape[0] - crop) // 2), max(0, (rgb.shape[1] - crop) // 2)
        panels.append((c, contour_overlay(rgb, inst)[y : y + crop, x : x + crop]))
    cols = 3
    rows = -(-len(panels) // cols)
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (c, img) in zip(axes.ravel(), panels):
        ax.imshow(img)
        ax.set_title(c, fontsize=10)
    fig.suptitle(f"{tile}: {method} outlines on the tile as each condition changes it", fontsize=10)
    return str(_save(plt, fig, Path(out)))


if __name__ == "__main__":
    fire.Fire({"make": make, "table": table, "examples": examples})
