"""The distinct colours of an 8-bit RGB image, and which one each pixel has.

Per-pixel colour transforms of an H&E tile (optical density, stain concentrations, CIELAB, fuzzy memberships) are
functions of the colour alone. A 1000² tile holds about a hundred thousand distinct colours, its haematoxylin-only
image a few hundred: computing such a transform once per colour and spreading it with the pixels' indices gives the
same per-pixel values for a fraction of the work.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["colour_palette"]

#: the 2^24-entry tables of :func:`colour_palette` (80 MB), kept between calls: allocated afresh, every call paid the
#: kernel's page faults as the scattered writes first touched them, more than the rest of the call together (a 1000²
#: tile beside a training run: 126 ms -> 28 ms). One set, taken under a lock; a call
#: that finds it in use builds its own, so threads never wait and memory stays bounded.
_TABLES: tuple[np.ndarray, np.ndarray] | None = None
_TABLES_LOCK = threading.Lock()


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
    # present in a table of all 2^24 colours and numbering them in order is a fraction of the time on a 1000² tile
    global _TABLES
    shared = _TABLES_LOCK.acquire(blocking=False)
    try:
        if shared and _TABLES is None:
            _TABLES = (np.zeros(1 << 24, dtype=bool), np.empty(1 << 24, dtype=np.int32))
        # ``present`` is all False between calls (each call clears what it set); ``index``'s entries are only read
        # where this call has just written them
        present, index = _TABLES if shared else (np.zeros(1 << 24, dtype=bool), np.empty(1 << 24, dtype=np.int32))
        present[code] = True
        codes = np.flatnonzero(present).astype(np.int32)
        present[codes] = False
        index[codes] = np.arange(codes.size, dtype=np.int32)
        inverse = index[code].astype(np.int64)
    finally:
        if shared:
            _TABLES_LOCK.release()
    colours = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=1).astype(np.uint8)
    return colours, inverse
