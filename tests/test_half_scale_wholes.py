"""bench.half_scale_wholes: a large, solid object seen at half scale replaces the default's pieces of it."""

from __future__ import annotations

import numpy as np
import pytest

from bench.half_scale_wholes import join_half_scale_wholes


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _background_nuclei(shape):
    """Eight small nuclei (area 29 each) along the top, so that the tile's median object is small."""
    full = np.zeros(shape, dtype=np.int32)
    for i in range(8):
        full[_disc(shape, 5, 6 + 11 * i, 3)] = 10 + i
    return full


def test_a_large_nucleus_cut_in_two_is_made_whole_and_nothing_else_moves():
    shape = (100, 100)
    full = _background_nuclei(shape)
    big = _disc(shape, 50, 50, 15)
    full[big & (np.arange(100)[None, :] < 50)] = 1
    full[big & (np.arange(100)[None, :] >= 50)] = 2
    half = np.zeros(shape, dtype=np.int32)
    half[_disc(shape, 50, 50, 16)] = 5  # the same nucleus, whole and a pixel wider
    fused, n = join_half_scale_wholes(full, half)
    assert n == 1
    assert not np.isin(fused, [1, 2]).any()
    new = fused[50, 50]
    assert new > full.max() and np.array_equal(fused == new, _disc(shape, 50, 50, 16))
    np.testing.assert_array_equal(fused[:12], full[:12])  # the small nuclei are untouched


def test_two_touching_nuclei_small_objects_and_single_pieces_are_left_alone():
    shape = (100, 100)
    base = _background_nuclei(shape)
    # two touching discs: one object at half scale, but not solid
    pair = _disc(shape, 50, 35, 13) | _disc(shape, 50, 60, 13)
    full = base.copy()
    full[_disc(shape, 50, 35, 13)] = 1
    full[_disc(shape, 50, 60, 13) & (full == 0)] = 2
    half = np.zeros(shape, dtype=np.int32)
    half[pair] = 7
    assert join_half_scale_wholes(full, half)[1] == 0
    # a large solid object with one piece only
    full = base.copy()
    full[_disc(shape, 50, 50, 15)] = 1
    half = np.zeros(shape, dtype=np.int32)
    half[_disc(shape, 50, 50, 16)] = 3
    assert join_half_scale_wholes(full, half)[1] == 0
    # a solid object cut in two, but no larger than the tile's median object: left alone
    full = np.zeros(shape, dtype=np.int32)
    for i in range(6):
        full[_disc(shape, 20 + 15 * (i // 3), 20 + 30 * (i % 3), 5)] = 10 + i
    full[_disc(shape, 80, 50, 5) & (np.arange(100)[None, :] < 50)] = 1
    full[_disc(shape, 80, 50, 5) & (np.arange(100)[None, :] >= 50)] = 2
    half = np.zeros(shape, dtype=np.int32)
    half[_disc(shape, 80, 50, 5)] = 4
    assert join_half_scale_wholes(full, half)[1] == 0


def test_maps_of_different_sizes_are_refused():
    with pytest.raises(ValueError, match="differ"):
        join_half_scale_wholes(np.zeros((4, 4)), np.zeros((4, 5)))
