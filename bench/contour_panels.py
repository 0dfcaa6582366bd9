"""Figure: the labelled nuclei's outlines beside those of several predictions, tile by tile, every instance outlined.

Pixel error overlays (``bench.worst_tiles``) cannot show a nucleus cut into pieces; outlines can. Labels are read only
to draw them.

    python -m bench.contour_panels --images ../shared/data/cpm15/train/images \
        --labels ../shared/data/cpm15/train/labels --preds "untold=PRED_A,told=PRED_B" --tiles image02,image03 \
        --crop 256 --out bench/results/outlines.png
"""

from __future__ import annotations

from pathlib import Path

import fire

from bench.harness.figures import contour_grid
from labelfree.core.imageio import list_images


def _names(value: str | tuple) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    return [str(x).strip() for x in items if str(x).strip()]


def run(images: str, labels: str, preds: str | tuple, tiles: str | tuple, out: str, crop: int | None = 256) -> Path:
    """Draw ``tiles`` (stems) of ``images``: labels, then each ``name=folder`` of ``preds``, cropped to the centre."""
    folders = {}
    for item in _names(preds):
        name, sep, folder = item.partition("=")
        if not sep or not Path(folder).is_dir():
            raise SystemExit(f"--preds wants name=folder pairs with existing folders, not {item!r}")
        folders[name] = Path(folder)
    by_stem = {p.stem: p for p in list_images(images)}
    missing = [t for t in _names(tiles) if t not in by_stem]
    if missing:
        raise SystemExit(f"no such tile in {images}: {', '.join(missing)}")
    path = contour_grid([by_stem[t] for t in _names(tiles)], Path(labels), folders, Path(out), crop=crop)
    print(f"written {path}")
    return path


if __name__ == "__main__":
    fire.Fire(run)
