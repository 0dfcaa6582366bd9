"""bench.half_scale_wholes: a large, solid object seen at half scale replaces the default's pieces of it."""

from __future__ import annotations

import numpy as np
import pytest

from bench.half_scale_wholes import join_half_scale_wholes
from labelfree.core.imageio import load_instance_map


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


def test_run_scores_both_arms_in_the_harness_layout_and_writes_the_fused_maps(tmp_path):
    import csv

    from bench.half_scale_wholes import run
    from labelfree.core.imageio import save_png, save_tiff

    shape = (64, 64)
    whole = np.zeros(shape, dtype=np.uint16)
    whole[_disc(shape, 32, 32, 12)] = 1
    cut = whole.copy()
    cut[:, 32:][whole[:, 32:] > 0] = 2
    save_png(tmp_path / "images" / "t.png", np.full((*shape, 3), 200, dtype=np.uint8))
    save_tiff(tmp_path / "labels" / "t.tif", whole)
    save_tiff(tmp_path / "full" / "t_inst.tif", cut)
    save_tiff(tmp_path / "half" / "t_inst.tif", whole)
    out = tmp_path / "out"
    run(str(tmp_path / "images"), str(tmp_path / "labels"), str(tmp_path / "full"), str(tmp_path / "half"), str(out))
    rows = {}
    for arm in ("default", "half_scale_wholes"):
        with open(out / arm / "seed0" / "results.csv", newline="") as fh:
            (rows[arm],) = list(csv.DictReader(fh))
    assert rows["half_scale_wholes"]["method"] == "half_scale_wholes" and rows["default"]["image"] == "t"
    assert float(rows["half_scale_wholes"]["aji"]) == pytest.approx(1.0) and float(rows["default"]["aji"]) < 0.6
    fused = load_instance_map(out / "half_scale_wholes" / "seed0" / "pred" / "t_inst.tif")
    assert len(np.unique(fused)) == 2
