"""bench.carve_large: large objects carved to, or divided among, their dark parts; a pale ring nucleus stays whole."""

import numpy as np
import pytest
from skimage.draw import disk

from bench.carve_large import carve_large_objects, split_large_objects


def _tile():
    """Eight ordinary nuclei, a large pale patch holding two dark nuclei, a large nucleus with a dark rim only."""
    inst, haem = np.zeros((200, 200), np.int32), np.zeros((200, 200), np.float32)
    for i in range(8):
        rr, cc = disk((15, 15 + 22 * i), 8)
        inst[rr, cc], haem[rr, cc] = i + 1, 1.0
    inst[60:140, 20:100], haem[60:140, 20:100] = 20, 0.4
    for centre in [(85, 45), (115, 75)]:
        rr, cc = disk(centre, 9)
        haem[rr, cc] = 1.2
    rr, cc = disk((100, 160), 30)
    inst[rr, cc], haem[rr, cc] = 30, 1.1
    rr, cc = disk((100, 160), 24)
    haem[rr, cc] = 0.3
    return inst, haem


def test_carving_keeps_the_two_dark_nuclei_of_the_patch_and_the_ring_nucleus_whole():
    inst, haem = _tile()
    out = carve_large_objects(inst, haem)
    assert out.max() == 11 and np.array_equal(np.unique(out), np.arange(12))
    ring = out[100, 160]
    assert ring > 0 and np.array_equal(out == ring, inst == 30)
    disc = (out == out[85, 45]).sum()
    assert out[85, 45] != out[115, 75] and disc == (out == out[115, 75]).sum() == disk((0, 0), 9)[0].size
    assert out[62, 22] == 0  # the pale patch around them is gone
    for i in range(1, 9):
        assert np.array_equal(out == out[15, 15 + 22 * (i - 1)], inst == i)


def test_splitting_divides_the_patch_between_its_nuclei_and_keeps_every_foreground_pixel():
    inst, haem = _tile()
    out = split_large_objects(inst, haem)
    assert np.array_equal(out > 0, inst > 0)
    assert out.max() == 11
    assert out[85, 45] != out[115, 75] and out[62, 22] in (out[85, 45], out[115, 75])
    assert np.array_equal(out == out[100, 160], inst == 30)


def test_nothing_large_nothing_changes():
    inst, haem = _tile()
    inst[inst >= 20] = 0
    assert np.array_equal(carve_large_objects(inst, haem), inst)
    assert np.array_equal(split_large_objects(inst, haem), inst)
    empty = np.zeros((10, 10), np.int32)
    assert np.array_equal(carve_large_objects(empty, haem[:10, :10]), empty)


def test_score_writes_each_arms_results_and_names_a_missing_map(tmp_path):
    import tifffile
    from PIL import Image

    from bench.carve_large import score
    from bench.harness.results_csv import read_one_method

    inst, haem = _tile()
    rgb = np.full(inst.shape + (3,), 235, np.uint8)
    rgb[inst > 0] = (150, 90, 170)
    rgb[haem > 1.0] = (70, 30, 110)
    for sub in ("images", "labels", "pred"):
        (tmp_path / sub).mkdir()
    Image.fromarray(rgb).save(tmp_path / "images" / "t.png")
    Image.fromarray(inst.astype(np.uint16)).save(tmp_path / "labels" / "t.png")
    tifffile.imwrite(tmp_path / "pred" / "t_inst.tif", inst)
    out = tmp_path / "out"
    score(str(tmp_path / "images"), str(tmp_path / "labels"), str(tmp_path / "pred"), str(out), seeds=3)
    default = read_one_method(out / "default" / "seed3" / "results.csv", ("aji", "dice"))
    assert default == {"t": {"aji": 1.0, "dice": 1.0}}  # the labels are the prediction itself
    for arm in ("carved", "split"):
        assert (out / arm / "seed3" / "results.csv").is_file()
    (tmp_path / "pred" / "t_inst.tif").unlink()
    with pytest.raises(FileNotFoundError, match="1 instance maps missing"):
        score(str(tmp_path / "images"), str(tmp_path / "labels"), str(tmp_path / "pred"), str(out))


def test_split_irregular_divides_only_a_large_object_that_is_not_convex():
    from bench.carve_large import split_irregular_objects

    inst, haem = _tile()
    out = split_irregular_objects(inst, haem)
    assert out[85, 45] == out[115, 75]  # the square patch is convex: left whole
    notched = inst.copy()
    notched[60:100, 60:100] = 0  # an L-shaped patch, still holding both dark nuclei
    out = split_irregular_objects(notched, haem)
    assert out[85, 45] != out[115, 75] and np.array_equal(out > 0, notched > 0)
