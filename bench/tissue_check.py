"""Benchmark: how the blank-tile check (``labelfree.transforms.stain.he_tissue_mask`` / ``has_tissue``) treats real
H&E tiles and non-H&E tiles.

For every real tile: the fraction of glass-free pixels (``tissue_mask``) that each H&E rule keeps, and whether the tile
still counts as tissue. For made-up non-H&E tiles (black, scanner border, grey ink, green and blue pen, pure red,
white): whether they are (wrongly) taken as tissue. No label is read. Writes ``tissue_check.md``.

    python -m bench.tissue_check --data ../shared/data --out bench/results
"""

from __future__ import annotations

from pathlib import Path

import fire
import numpy as np

from labelfree.core.imageio import list_images, load_rgb, save_text
from labelfree.transforms.stain import MIN_TISSUE_FRACTION, has_tissue, he_tissue_mask, tissue_mask

DATASETS = ("monuseg", "cpm15", "glas")


def non_he_tiles(size: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
    """Tiles that must count as "no tissue": each a flat colour with a little sensor noise."""
    rng = np.random.default_rng(seed)
    colours = {
        "black": (0, 0, 0),
        "dark scanner border": (18, 16, 20),
        "grey ink": (90, 92, 95),
        "green pen": (40, 150, 90),
        "blue pen": (40, 70, 200),
        "pure red": (255, 0, 0),
        "white (saturated sensor)": (255, 255, 255),
    }
    return {
        name: np.clip(np.array(c, float) + rng.normal(scale=3, size=(size, size, 3)), 0, 255).astype(np.uint8)
        for name, c in colours.items()
    }


def run(data: str = "../shared/data", out: str = "bench/results") -> str:
    lines = [
        "# Blank-tile check on real and non-H&E tiles",
        "",
        "`python -m bench.tissue_check --data ../shared/data --out bench/results`. Per dataset: the smallest fraction "
        "of a tile's glass-free pixels that the H&E rules keep, and how many tiles still count as tissue "
        f"(threshold {MIN_TISSUE_FRACTION:.3%} of the tile).",
        "",
        "| dataset | tiles | kept fraction, worst tile | kept fraction, mean | tiles with tissue |",
        "|---|---|---|---|---|",
    ]
    for ds in DATASETS:
        folder = Path(data) / ds / "train" / "images"
        if not folder.is_dir():
            continue
        kept, tissue = [], 0
        for path in list_images(folder):
            rgb = load_rgb(path)
            glass_free = tissue_mask(rgb)
            kept.append(float((he_tissue_mask(rgb) & glass_free).sum() / max(glass_free.sum(), 1)))
            tissue += has_tissue(rgb)
        lines.append(f"| {ds} | {len(kept)} | {min(kept):.4f} | {np.mean(kept):.4f} | {tissue} / {len(kept)} |")
    lines += ["", "| made-up tile | counted as tissue |", "|---|---|"]
    for name, tile in non_he_tiles().items():
        lines.append(f"| {name} | {'yes' if has_tissue(tile) else 'no'} |")
    text = "\n".join(lines) + "\n"
    save_text(Path(out) / "tissue_check.md", text)
    print(text)
    return str(Path(out) / "tissue_check.md")


if __name__ == "__main__":
    fire.Fire(run)
