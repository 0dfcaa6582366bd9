"""The distinct colours of an 8-bit RGB image, and which one each pixel has.

Per-pixel colour transforms of an H&E tile (optical density, stain concentrations, CIELAB, fuzzy memberships) are
functions of the colour alone. A 1000² tile holds about a hundred thousand distinct colours, its haematoxylin-only
image a few hundred: computing such a transform once per colour and spreading it with the pixels' indices gives the
same per-pixel values for a fraction of the work.
"""

from __future__ import annotations

import numpy as np

__all__ = ["colour_palette"]


def colour_palette(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct colours of a uint8 RGB image.

    Args:
        rgb: ``(..., 3)`` uint8 RGB (any leading shape, channel last).

    Returns:
        ``(U, 3)`` uint8 distinct colours, sorted by their packed 24-bit value, and ``(N,)`` int64 indices into them,
        one per pixel in C order (``N`` = the number of pixels).
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
        raise TypeError(f"expected (..., 3) uint8 RGB, got {rgb.dtype} of shape {rgb.shape}")
    flat = rgb.reshape(-1, 3)
    code = (flat[:, 0].astype(np.int32) << 16) | (flat[:, 1].astype(np.int32) << 8) | flat[:, 2]
    # np.unique(code, return_inverse=True) gives the same two arrays by sorting every pixel's code; marking the codes
    # present in a table of all 2^24 colours and numbering them in order is half the time on a 1000² tile
    present = np.zeros(1 << 24, dtype=bool)
    present[code] = True
    codes = np.flatnonzero(present).astype(np.int32)
    index = np.empty(1 << 24, dtype=np.int32)  # only the entries of present codes are written and read
    index[codes] = np.arange(codes.size, dtype=np.int32)
    colours = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=1).astype(np.uint8)
    return colours, index[code].astype(np.int64)
