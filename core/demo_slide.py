"""Synthetic whole slides built from real tiles: pyramidal OME-TIFF, or a generic tiled TIFF OpenSlide reads.

No slide can be downloaded where this project is tested, so the slide tests, the slide benchmark and the slide demo
paste H&E tiles (the embedded MoNuSeg sample, for example) onto glass at known places, with a known microns per
pixel, optionally a black scanner border and a green pen stroke. The file is written tile by tile from a generator,
so a 40k² slide needs no more memory than a 5k² one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = ["write_demo_slide", "GLASS_RGB"]

#: colour of the empty glass around the tissue
GLASS_RGB = (238, 236, 241)


def _region(
    x: int, y: int, w: int, h: int, patches: Sequence[tuple[int, int, np.ndarray]], border: int, pen: tuple | None
) -> np.ndarray:
    out = np.empty((h, w, 3), dtype=np.uint8)
    out[:] = GLASS_RGB
    for px, py, rgb in patches:
        ph, pw = rgb.shape[:2]
        x0, y0, x1, y1 = max(x, px), max(y, py), min(x + w, px + pw), min(y + h, py + ph)
        if x0 < x1 and y0 < y1:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = rgb[y0 - py : y1 - py, x0 - px : x1 - px]
    if border > 0 and x < border:  # a black strip along the left edge, as scanners leave
        out[:, : max(0, min(border - x, w))] = 12
    if pen is not None:
        px0, py0, px1, py1 = pen
        x0, y0, x1, y1 = max(x, px0), max(y, py0), min(x + w, px1), min(y + h, py1)
        if x0 < x1 and y0 < y1:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = (40, 120, 60)  # green marker
    return out


def write_demo_slide(
    path: str | os.PathLike,
    width: int,
    height: int,
    patches: Sequence[tuple[int, int, np.ndarray]],
    mpp: float | None = 0.25,
    tile: int = 256,
    levels: int = 3,
    layout: str = "ome",
    border: int = 0,
    pen: tuple[int, int, int, int] | None = None,
) -> Path:
    """Write a synthetic slide: glass with ``patches`` pasted at level-0 positions, and a pyramid.

    Args:
        path: the file to write (``.ome.tif`` / ``.tif``).
        width, height: level-0 size in pixels.
        patches: ``(x, y, (h, w, 3) uint8)`` tissue pasted at level-0 ``(x, y)``.
        mpp: microns per level-0 pixel written into the file; ``None`` writes none.
        tile: TIFF tile side.
        levels: pyramid levels, each half the size of the one before.
        layout: ``"ome"`` (OME-TIFF, levels as SubIFDs: tifffile reads it) or ``"generic"`` (levels as pages, resolution
            tags: OpenSlide's generic tiled TIFF).
        border: width of a black strip along the left edge (0: none).
        pen: ``(x0, y0, x1, y1)`` of a green pen stroke in level-0 pixels, or ``None``.

    Returns:
        the path written.
    """
    import tifffile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    patches = [(int(x), int(y), np.asarray(rgb)[..., :3].astype(np.uint8)) for x, y, rgb in patches]

    glass = np.empty((tile, tile, 3), dtype=np.uint8)
    glass[:] = GLASS_RGB
    boxes = [(x, y, x + rgb.shape[1], y + rgb.shape[0]) for x, y, rgb in patches]
    if pen is not None:
        boxes.append(tuple(pen))
    if border > 0:
        boxes.append((0, 0, border, height))

    def tiles(level: int) -> Iterator[np.ndarray]:
        d = 2**level
        lw, lh = -(-width // d), -(-height // d)
        for ty in range(0, lh, tile):
            for tx in range(0, lw, tile):
                x0, y0, x1, y1 = tx * d, ty * d, (tx + tile) * d, (ty + tile) * d
                if not any(bx0 < x1 and bx1 > x0 and by0 < y1 and by1 > y0 for bx0, by0, bx1, by1 in boxes):
                    yield glass  # nothing pasted here: most of a large synthetic slide
                    continue
                reg = _region(x0, y0, tile * d, tile * d, patches, border, pen)
                if d > 1:
                    reg = reg.reshape(tile, d, tile, d, 3).mean(axis=(1, 3)).round().astype(np.uint8)
                yield reg

    res = None if mpp is None else (1e4 / mpp, 1e4 / mpp)
    opts = dict(tile=(tile, tile), photometric="rgb", compression="zlib")
    with tifffile.TiffWriter(path, bigtiff=True, ome=(layout == "ome")) as tif:
        for level in range(levels):
            d = 2**level
            shape = (-(-height // d), -(-width // d), 3)
            kw = dict(opts)
            if res is not None:
                kw.update(resolution=(res[0] / d, res[1] / d), resolutionunit="CENTIMETER")
            if layout == "ome":
                if level == 0:
                    meta = {"axes": "YXS"}
                    if mpp is not None:
                        meta.update(
                            PhysicalSizeX=mpp, PhysicalSizeY=mpp, PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm"
                        )
                    tif.write(tiles(0), shape=shape, dtype=np.uint8, subifds=levels - 1, metadata=meta, **kw)
                else:
                    tif.write(tiles(level), shape=shape, dtype=np.uint8, subfiletype=1, metadata=None, **kw)
            elif layout == "generic":
                sub = 1 if level else 0  # reduced-resolution pages, as OpenSlide expects
                tif.write(tiles(level), shape=shape, dtype=np.uint8, subfiletype=sub, metadata=None, **kw)
            else:
                raise ValueError(f"layout must be 'ome' or 'generic', got {layout!r}")
    return path
