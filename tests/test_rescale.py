"""Tiles whose nuclei look small, segmented again at twice the scale (labelfree.engines.rescale, auto_scale)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from labelfree.engines.rescale import RescaleSmallNucleid, reference_object_area
from labelfree.transforms.instances import median_object_area

REPO = Path(__file__).resolve().parents[1]


def test_median_object_area_counts_pixels_per_id():
    inst = np.zeros((10, 10), np.int32)
    inst[0:2, 0:2], inst[5:8, 5:8], inst[0:1, 5:9] = 1, 4, 7  # areas 4, 9, 4; ids need not be sequential
    assert median_object_area(inst) == (4.0, 3)
    assert median_object_area(torch.as_tensor(inst)[None]) == (4.0, 3)
    assert median_object_area(np.zeros((4, 4), np.int32)) == (0.0, 0)


def test_the_reference_is_the_median_of_the_tiles_medians_without_empty_tiles():
    tiles = [np.full((4, 4, 3), v, np.uint8) for v in (0, 1, 2, 3)]
    inst = {0: np.zeros((8, 8), np.int32)}  # a tile without objects: left out
    for v, side in ((1, 2), (2, 3), (3, 5)):
        inst[v] = np.zeros((8, 8), np.int32)
        inst[v][:side, :side] = 1
    assert reference_object_area(lambda rgb: inst[int(rgb[0, 0, 0])], tiles) == 9.0
    assert reference_object_area(lambda rgb: inst[0], tiles) is None


def _squares(n: int, side: int = 3, size: int = 64) -> np.ndarray:
    """``(3, size, size)`` uint8 tile: ``n`` white squares of ``side`` px on black, 8 px apart."""
    tile = np.zeros((3, size, size), np.uint8)
    for i in range(n):
        y, x = 4 + 10 * (i // 6), 4 + 10 * (i % 6)
        tile[:, y : y + side, x : x + side] = 255
    return tile


def _steps(calls: list):
    """A toy bundle: the network's output is the input's first channel, the instances its connected components."""

    def network_input(d):
        return {"image": torch.as_tensor(d["image"]).float() / 255.0}

    def inferer(x, network):
        calls.append(tuple(x.shape))
        return x[:, :1]

    def instance_steps(d):
        inst, _ = ndi.label(np.asarray(d["pred"][0]) > 0.5)
        return {**d, "inst": inst[None].astype(np.int32), "seg": (inst > 0)[None]}

    return network_input, inferer, instance_steps


def _first_pass(tile: np.ndarray, steps) -> dict:
    network_input, inferer, instance_steps = steps
    x = network_input({"image": tile})["image"]
    return instance_steps({"pred": inferer(x[None], None)[0], "tile": tile})


def test_a_tile_with_small_nuclei_is_segmented_again_at_twice_the_scale():
    calls: list = []
    steps = _steps(calls)
    network_input, inferer, instance_steps = steps
    tile = _squares(12)  # 12 objects of 9 px
    first = _first_pass(tile, steps)
    rescale = RescaleSmallNucleid(inferer, None, network_input, instance_steps, reference_area=100.0)
    out = rescale(first)
    assert out["rescaled"] == 2.0 and calls[-1] == (1, 3, 128, 128)  # the tile resampled x2 went through the network
    assert out["inst"].shape == (1, 128, 128) and median_object_area(out["inst"]) == (36.0, 12)
    np.testing.assert_array_equal(out["tile"], tile)  # the tile as read stays for the resizing back


@pytest.mark.parametrize(
    "n, reference, enabled, note",
    [
        (12, 18.0, True, None),  # 9 px is half of 18: not below half the reference
        (9, 100.0, True, None),  # fewer than ten objects: no reliable median
        (12, 100.0, False, None),  # switched off (a stated resolution, the slide path)
        (12, 100.0, True, "no tissue"),  # a blank tile keeps its empty result
    ],
)
def test_other_tiles_keep_their_first_pass(n, reference, enabled, note):
    calls: list = []
    steps = _steps(calls)
    first = _first_pass(_squares(n), steps)
    if note:
        first["note"] = note
    before = len(calls)
    out = RescaleSmallNucleid(steps[1], None, steps[0], steps[2], reference_area=reference, enabled=enabled)(first)
    assert len(calls) == before and out["rescaled"] == 1.0
    np.testing.assert_array_equal(out["inst"], first["inst"])


def test_bad_settings_are_refused():
    steps = _steps([])
    for kwargs in (
        {"reference_area": 0.0},
        {"reference_area": 10.0, "factor": 1.0},
        {"reference_area": 10.0, "area_fraction": 1.5},
    ):
        with pytest.raises(ValueError, match="reference_area"):
            RescaleSmallNucleid(steps[1], None, steps[0], steps[2], **kwargs)


def test_ssimnet_auto_scale_segments_a_shrunk_tile_as_if_told_its_resolution():
    """A sample tile shrunk to half its size: with ``auto_scale`` and told nothing, SSimNet finds its nuclei small and
    gives exactly what ``--input_mpp 0.5`` gives; the full-size tile is left at its own scale."""
    from labelfree.core.imageio import list_images, load_rgb
    from labelfree.engines.slides import BundleTileSegmenter
    from labelfree.sample import sample_dir
    from labelfree.transforms.scale import resample_rgb

    root = REPO / "bundles" / "ssimnet"
    rgb = load_rgb(list_images(sample_dir() / "images")[0])
    small = resample_rgb(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2))
    auto = BundleTileSegmenter(root, device="cpu", overrides={"auto_scale": True})
    told = BundleTileSegmenter(root, device="cpu", overrides={"auto_scale": True, "input_mpp": 0.5})(small)
    np.testing.assert_array_equal(auto(small), told)
    plain = BundleTileSegmenter(root, device="cpu", overrides={"auto_scale": False})
    np.testing.assert_array_equal(auto(rgb), plain(rgb))


def test_the_self_training_teacher_and_the_slide_path_never_rescale():
    """The rounds' teacher segments the training tiles at their own scale whatever the inference default is; so does
    the slide path, whose tiles are resampled to the model's resolution."""
    from bundle_runner import import_bundle_module

    from labelfree.engines.slides import TILE_OVERRIDES, BundleTileSegmenter

    st = import_bundle_module("ssimnet", "self_training")
    teacher = st._segmenter(REPO / "bundles" / "ssimnet", REPO / "bundles" / "ssimnet" / "models" / "model.pt", "cpu")
    steps = [t for t in teacher.post if isinstance(t, RescaleSmallNucleid)]
    assert len(steps) == 1 and steps[0].enabled is False
    tiles = BundleTileSegmenter(REPO / "bundles" / "ssimnet", device="cpu", overrides={**TILE_OVERRIDES})
    assert [t.enabled for t in tiles.post if isinstance(t, RescaleSmallNucleid)] == [False]
