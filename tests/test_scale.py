"""Physical scale (labelfree.transforms.scale): tiles at another resolution are segmented at the model's."""

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from labelfree.core.imageio import list_images, load_rgb
from labelfree.sample import sample_dir
from labelfree.transforms.scale import (
    MatchSpatialSize,
    MatchSpatialSized,
    ToModelScale,
    ToModelScaled,
    double_labelled_tile,
    halve_labelled_tile,
    resample_rgb,
    zoom_factor,
)

REPO = Path(__file__).resolve().parents[1]


def test_zoom_factor_is_one_without_a_resolution_or_within_tolerance():
    assert zoom_factor(None, 0.25) == 1.0
    assert zoom_factor(0.26, 0.25) == 1.0  # 4 % apart: not worth resampling
    assert zoom_factor(0.5, 0.25) == 2.0 and zoom_factor(0.125, 0.25) == 0.5
    for bad in (0.0, -0.5, float("nan")):
        with pytest.raises(ValueError, match="positive"):
            zoom_factor(bad, 0.25)


def test_to_model_scale_keeps_type_dtype_and_file_name():
    rgb = np.random.default_rng(0).integers(0, 256, (3, 10, 12), dtype=np.uint8)
    tile = MetaTensor(torch.from_numpy(rgb), meta={"filename_or_obj": "a.png"})
    up = ToModelScaled("image", input_mpp=0.5, model_mpp=0.25)({"image": tile})["image"]
    assert isinstance(up, MetaTensor) and up.dtype == torch.uint8 and tuple(up.shape) == (3, 20, 24)
    assert up.meta["filename_or_obj"] == "a.png"
    down = ToModelScale(0.125, 0.25)(rgb)
    assert isinstance(down, np.ndarray) and down.dtype == np.uint8 and down.shape == (3, 5, 6)
    # a flat image stays flat (no ringing), and a float image stays float
    flat = ToModelScale(0.5)(torch.full((3, 7, 9), 0.4))
    assert flat.dtype == torch.float32 and torch.allclose(flat, torch.tensor(0.4))
    assert ToModelScale(None)(tile) is tile and ToModelScale(0.255)(tile) is tile


def test_halve_labelled_tile_shows_each_nucleus_at_half_size_and_keeps_what_was_ignored():
    """Two touching squares of 8 x 8 become two touching 4 x 4 squares with their ids; a tile with odd sides loses
    its last row and column; a pixel of the half tile is ignored when any pixel of its 2 x 2 block was."""
    inst = np.zeros((21, 31), dtype=np.int32)
    inst[4:12, 4:12], inst[4:12, 12:20] = 3, 7
    rgb = np.full((21, 31, 3), 230, dtype=np.uint8)
    rgb[inst > 0] = (60, 40, 120)
    ignore = np.zeros(inst.shape, dtype=bool)
    ignore[17, 25] = True  # one pixel: its whole block is ignored at half size
    half_rgb, half_inst, half_ignore = halve_labelled_tile(rgb, inst, ignore)
    assert half_rgb.shape == (10, 15, 3) and half_rgb.dtype == np.uint8
    assert half_inst.shape == (10, 15) and half_inst.dtype == np.int32 and half_ignore.dtype == bool
    assert (half_inst == 3).sum() == 16 and (half_inst == 7).sum() == 16  # a quarter of the area each
    assert np.array_equal(np.unique(half_inst[2:6, 2:10]), [3, 7]) and half_inst[2:6, 2:10].all()
    assert np.argwhere(half_ignore).tolist() == [[8, 12]]
    # the colours follow the nuclei: dark inside, pale outside
    assert half_rgb[3, 4].tolist() == [60, 40, 120] and half_rgb[8, 2].tolist() == [230, 230, 230]
    with pytest.raises(ValueError, match="differ"):
        halve_labelled_tile(rgb, inst[:20], ignore)
    with pytest.raises(ValueError, match="no half"):
        halve_labelled_tile(rgb[:1], inst[:1], ignore[:1])


def test_match_spatial_size_undoes_an_upsampling_and_relabels():
    inst = np.zeros((1, 8, 8), np.int32)
    inst[0, 1:4, 1:4], inst[0, 5:8, 5:8] = 3, 7
    up = MatchSpatialSize((16, 16))(inst)
    assert up.dtype == np.int32 and up.shape == (1, 16, 16) and set(np.unique(up)) == {0, 3, 7}
    np.testing.assert_array_equal(MatchSpatialSize((8, 8))(up), inst)
    assert MatchSpatialSize((8, 8))(inst) is inst
    # shrinking by 4 loses the one-pixel object: the ids that remain are renumbered 1..n
    inst[0, 0, 7] = 9
    small = MatchSpatialSized("inst", ref_key="tile", relabel=True)(
        {"inst": torch.from_numpy(inst), "tile": torch.zeros(3, 2, 2)}
    )["inst"]
    assert isinstance(small, torch.Tensor) and tuple(small.shape) == (1, 2, 2)
    assert sorted(torch.unique(small).tolist()) == [0, 1, 2]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def test_ssimnet_segments_a_20x_tile_at_the_model_scale():
    """A sample tile shrunk to half its size (as a 20x scan of it would be): with ``input_mpp`` 0.5 the shipped
    SSimNet finds nearly the nuclei it finds at full size, in the small tile's own pixel grid, and more of them
    than when it is told nothing."""
    from labelfree.engines.slides import BundleTileSegmenter

    rgb = load_rgb(list_images(sample_dir() / "images")[0])
    h, w = rgb.shape[:2]
    small = resample_rgb(rgb, (w // 2, h // 2))
    full = BundleTileSegmenter(REPO / "bundles" / "ssimnet", device="cpu")(rgb)
    reference = full[::2, ::2][: h // 2, : w // 2] > 0
    told = BundleTileSegmenter(REPO / "bundles" / "ssimnet", device="cpu", overrides={"input_mpp": 0.5})(small)
    assert told.shape == small.shape[:2]
    ids = np.unique(told)
    np.testing.assert_array_equal(ids, np.arange(len(ids)))  # sequential ids after resizing back
    n_full, n_told = len(np.unique(full)) - 1, len(ids) - 1
    assert abs(n_told - n_full) <= 0.15 * n_full
    assert _dice(told > 0, reference) >= 0.85
    untold = BundleTileSegmenter(REPO / "bundles" / "ssimnet", device="cpu")(small)
    assert abs(n_told - n_full) < abs(len(np.unique(untold)) - 1 - n_full)


def test_stated_resolution_bench_reads_magnifications(tmp_path):
    from bench.by_magnification import magnifications

    (tmp_path / "per_image.csv").write_text("name,width,magnification\nimage01,5,20x\nimage08,5,40X\nimage09,5,40\n")
    assert magnifications(tmp_path / "per_image.csv") == {"image01": 20.0, "image08": 40.0, "image09": 40.0}


def test_double_labelled_tile_shows_each_nucleus_at_twice_the_size_and_keeps_what_was_ignored():
    """Two touching squares of 4 x 4 become two touching 8 x 8 squares with their ids; an ignored pixel becomes an
    ignored 2 x 2 block; halving the doubled tile gives the tile back."""
    inst = np.zeros((11, 15), dtype=np.int32)
    inst[2:6, 2:6], inst[2:6, 6:10] = 3, 7
    rgb = np.full((11, 15, 3), 230, dtype=np.uint8)
    rgb[inst > 0] = (60, 40, 120)
    ignore = np.zeros(inst.shape, dtype=bool)
    ignore[9, 13] = True
    big_rgb, big_inst, big_ignore = double_labelled_tile(rgb, inst, ignore)
    assert big_rgb.shape == (22, 30, 3) and big_rgb.dtype == np.uint8
    assert big_inst.shape == (22, 30) and big_inst.dtype == np.int32 and big_ignore.dtype == bool
    assert (big_inst == 3).sum() == 64 and (big_inst == 7).sum() == 64  # four times the area each
    assert np.array_equal(np.unique(big_inst[4:12, 4:20]), [3, 7]) and big_inst[4:12, 4:20].all()
    assert np.argwhere(big_ignore).tolist() == [[18, 26], [18, 27], [19, 26], [19, 27]]
    # the colours follow the nuclei: dark well inside, pale well outside
    assert big_rgb[7, 7].tolist() == [60, 40, 120] and big_rgb[18, 4].tolist() == [230, 230, 230]
    back_rgb, back_inst, back_ignore = halve_labelled_tile(big_rgb, big_inst, big_ignore)
    assert np.array_equal(back_inst, inst) and np.array_equal(back_ignore, ignore)
    with pytest.raises(ValueError, match="differ"):
        double_labelled_tile(rgb, inst[:10], ignore)
