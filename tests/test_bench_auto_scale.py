"""The auto-scale benchmark (bench.auto_scale) on the embedded sample: which tile it segments again, and its default."""

import json
from pathlib import Path

import numpy as np

from labelfree.core.imageio import list_images, load_rgb
from labelfree.engines.slides import BundleTileSegmenter
from labelfree.sample import sample_dir

REPO = Path(__file__).resolve().parents[1]


def test_the_sample_tile_with_small_nuclei_is_the_one_segmented_again(tmp_path):
    """On the three sample crops the reference is their own median; the HE-7128 crop (small, crowded nuclei) is below
    half of it and is the only one segmented again. Both variants are scored as the bundle's tile path segments."""
    from bench.auto_scale import run, segment, segmenters

    images, labels = sample_dir() / "images", sample_dir() / "labels"
    run(str(images), str(labels), str(tmp_path), reference_images=str(images), threads=1)
    result = json.loads((tmp_path / "auto_scale.json").read_text())
    assert result["switched"] == {"0": ["TCGA-HE-7128-01Z-00-DX1_crop244-244"]}
    rows = {(r["image"], r["variant"]): r for r in result["rows"]}
    for path in list_images(images):
        same = rows[(path.stem, "default")]["aji"] == rows[(path.stem, "auto_scale")]["aji"]
        assert same == (path.stem != "TCGA-HE-7128-01Z-00-DX1_crop244-244")
    # for SSimNet the second pass is the bundle's own with --input_mpp 0.5, and what its auto_scale gives
    root = REPO / "bundles" / "ssimnet"
    rgb = load_rgb(list_images(images)[2])
    seg = segmenters("ssimnet", [None])[0]
    told = BundleTileSegmenter(root, device="cpu", overrides={"auto_scale": False, "input_mpp": 0.5})(rgb)
    auto = BundleTileSegmenter(root, device="cpu", overrides={"auto_scale": True})(rgb)
    assert np.array_equal(segment(seg, rgb, 2.0), told) and np.array_equal(told, auto)


def test_split_by_cuts_each_native_object_at_the_finer_objects_only():
    from bench.auto_scale import split_by

    native = np.zeros((10, 20), np.int32)
    native[2:8, 2:18], native[0:2, 0:3] = 5, 9  # a long object and a small one no finer object touches
    finer = np.zeros_like(native)
    finer[3:7, 3:8], finer[3:7, 12:17], finer[9, 0] = 1, 2, 3  # two cuts inside 5, one outside every native object
    out = split_by(native, finer)
    assert np.array_equal(out > 0, native > 0)  # the foreground is the native one
    assert len(np.unique(out[native == 5])) == 2 and len(np.unique(out[native == 9])) == 1
    assert out[4, 4] != out[4, 16] and out[4, 9] == out[4, 4] and out[4, 10] == out[4, 16]  # cut at the midpoint
    assert sorted(np.unique(out).tolist()) == [0, 1, 2, 3]
