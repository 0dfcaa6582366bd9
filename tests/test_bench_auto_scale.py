"""The auto-scale benchmark (bench.auto_scale) on the embedded sample: which tile it segments again, and its default."""

import json
from pathlib import Path

import numpy as np
import torch

from labelfree.core.imageio import list_images, load_rgb
from labelfree.engines.slides import BundleTileSegmenter
from labelfree.sample import sample_dir

REPO = Path(__file__).resolve().parents[1]


def test_the_sample_tile_with_small_nuclei_is_the_one_segmented_again(tmp_path):
    """On the three sample crops the reference is their own median; the HE-7128 crop (small, crowded nuclei) is below
    half of it and is the only one segmented again. Both variants are scored as the bundle's tile path segments."""
    from bench.auto_scale import BundleSegmenter, run

    images, labels = sample_dir() / "images", sample_dir() / "labels"
    run(str(images), str(labels), str(tmp_path), reference_images=str(images), threads=1)
    result = json.loads((tmp_path / "auto_scale.json").read_text())
    assert result["switched"] == {"0": ["TCGA-HE-7128-01Z-00-DX1_crop244-244"]}
    rows = {(r["image"], r["variant"]): r for r in result["rows"]}
    for path in list_images(images):
        same = rows[(path.stem, "default")]["aji"] == rows[(path.stem, "auto_scale")]["aji"]
        assert same == (path.stem != "TCGA-HE-7128-01Z-00-DX1_crop244-244")
    # the bench's default pass is the bundle's own (auto_scale off), the switched tile's second pass its auto_scale
    root = REPO / "bundles" / "ssimnet"
    path = list_images(images)[2]
    native = BundleSegmenter(images, None)
    native.network.load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))
    native.network.eval()
    inst, _, _ = native(native.preprocessing({"image": str(path)}), native.network)
    plain = BundleTileSegmenter(root, device="cpu", overrides={"auto_scale": False})(load_rgb(path))
    assert np.array_equal(inst, plain)
