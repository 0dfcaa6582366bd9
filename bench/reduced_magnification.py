"""A labelled tile set shown at a lower magnification: a 40× set as a 20× scan would give it.

Labelled 20× nuclei are scarce (CPM-15 has seven tiles). A 40× set reduced by an integer factor gives more: each tile
is box-averaged over ``factor × factor`` pixels (what a sensor with pixels ``factor`` times wider records, without the
ringing of a sharper filter) and its instance labels are sampled on the same grid, at the top-left pixel of each block
(labels cannot be averaged; the offset is half an original pixel). Tile sides are cropped to a multiple of ``factor``.
A ``per_image.csv`` with each tile's new magnification is written beside, for ``bench.stated_resolution``.

    python -m bench.reduced_magnification --images ../shared/data/monuseg/train/images \
        --labels ../shared/data/monuseg/train/labels --out /tmp/monuseg_20x

Labels are only copied (reduced), never read for anything else.
"""

from __future__ import annotations

import os
from pathlib import Path

import fire
import numpy as np

from labelfree.core.imageio import find_label, list_images, load_instance_map, load_rgb, save_png, save_text, save_tiff


def box_reduce(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor × factor`` blocks of an ``H,W,C`` uint8 image (sides cropped to multiples of ``factor``).

    Returns:
        ``(H // factor, W // factor, C)`` uint8, rounded to nearest.
    """
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    blocks = image[:h, :w].astype(np.float64).reshape(h // factor, factor, w // factor, factor, -1)
    return np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)


def sample_labels(labels: np.ndarray, factor: int) -> np.ndarray:
    """The instance map sampled at the top-left pixel of each ``factor × factor`` block (same grid as
    :func:`box_reduce`). Instances with no sampled pixel disappear; the rest keep their ids.

    Returns:
        ``(H // factor, W // factor)`` with the input's dtype.
    """
    h, w = (labels.shape[0] // factor) * factor, (labels.shape[1] // factor) * factor
    return np.ascontiguousarray(labels[:h:factor, :w:factor])


def run(images: str, labels: str, out: str, factor: int = 2, magnification: float = 40.0) -> Path:
    """Write ``out/images`` (PNG), ``out/labels`` (uint16 TIFF) and ``out/per_image.csv`` for every tile.

    Args:
        images: folder of tiles at ``magnification``.
        labels: their instance maps (named like the tiles).
        out: the reduced set's folder.
        factor: integer reduction (2: 40× → 20×).
        magnification: the tiles' magnification, for ``per_image.csv``.

    Returns:
        ``out``.
    """
    if int(factor) != factor or factor < 2:
        raise SystemExit(f"factor must be an integer >= 2, not {factor}")
    factor = int(factor)
    out_dir = Path(out)
    rows = ["name,width,height,magnification"]
    for path in list_images(images):
        rgb = box_reduce(load_rgb(path), factor)
        inst = sample_labels(load_instance_map(find_label(labels, path.name)), factor)
        save_png(out_dir / "images" / f"{path.stem}.png", rgb)
        save_tiff(out_dir / "labels" / f"{path.stem}.tif", inst.astype(np.uint16))
        rows.append(f"{path.stem},{rgb.shape[1]},{rgb.shape[0]},{magnification / factor:g}x")
    save_text(out_dir / "per_image.csv", "\n".join(rows) + "\n")
    print(f"{len(rows) - 1} tiles at {magnification / factor:g}x written to {os.fspath(out_dir)}")
    return out_dir


if __name__ == "__main__":
    fire.Fire(run)
