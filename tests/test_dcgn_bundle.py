"""DCGN bundle end to end through ``python -m monai.bundle run``: tiny training, inference, evaluation, errors."""

import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from bundle_runner import REPO, run_bundle, run_bundle_ok, run_inference_ok, write_synthetic_dataset

BUNDLE = "dcgn"
FAST = {"image_size": 128}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Trained with the default model_path: the weights land in the run folder, the shipped ones stay as they are."""
    root = tmp_path_factory.mktemp("dcgn")
    images, labels = write_synthetic_dataset(root / "data")
    shipped = REPO / "bundles" / BUNDLE / "models" / "model.pt"
    before = shipped.read_bytes()
    proc = run_bundle_ok(
        BUNDLE, ("train",), cwd=root, dataset_dir=images, output_dir=root / "out", max_epochs=2, **FAST
    )
    assert shipped.read_bytes() == before
    model = root / "out" / "model.pt"
    return {"root": root, "images": images, "labels": labels, "model": model, "log": proc.stdout + proc.stderr}


def test_training_is_label_free_deterministic_and_saves_bare_weights(trained, tmp_path):
    ckpt = torch.load(trained["model"], weights_only=True)
    assert "head.0.weight" in ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values())  # a bare state dict
    assert f"trained weights written to {trained['model']}" in trained["log"]
    again = tmp_path / "m.pt"
    run_bundle_ok(
        BUNDLE,
        ("train",),
        cwd=tmp_path,
        dataset_dir=trained["images"],
        output_dir=tmp_path / "o",
        model_path=again,
        max_epochs=2,
        **FAST,
    )
    b = torch.load(again, weights_only=True)
    assert all(torch.equal(ckpt[k], b[k]) for k in b)


def test_inference_contract_and_class_rule_metadata(trained, tmp_path):
    out = tmp_path / "out"
    run_inference_ok(BUNDLE, trained, tmp_path, out, **FAST)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"tile{i}_{k}" for i in range(3) for k in ("inst.tif", "seg.png", "overlay.png")
    )
    seg = Image.open(out / "tile0_seg.png")
    assert "haematoxylin" in seg.text["dcgn_class_rule"] and seg.text["dcgn_nuclei_class"] == "1"
    assert np.asarray(seg).shape == (256, 256) and set(np.unique(np.asarray(seg))) <= {0, 255}
    assert tifffile.imread(out / "tile0_inst.tif").shape == (256, 256)


def test_evaluate_and_missing_dataset_dir(trained, tmp_path):
    proc = run_bundle_ok(
        BUNDLE,
        ("inference", "evaluate"),
        cwd=tmp_path,
        dataset_dir=trained["images"],
        labels_dir=trained["labels"],
        output_dir=tmp_path / "ev",
        ckpt_path=trained["model"],
        **FAST,
    )
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n_images"] == 3
    proc = run_bundle(
        BUNDLE,
        ("inference",),
        cwd=tmp_path,
        dataset_dir=tmp_path / "no_such_folder",
        output_dir=tmp_path / "x",
        ckpt_path=trained["model"],
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"error: --dataset_dir {tmp_path / 'no_such_folder'} does not exist" in proc.stderr


def test_shipped_checkpoint_finds_nuclei_on_the_embedded_sample(tmp_path):
    """The README's DCGN command: the shipped K = 2 model on the sample tiles, default settings, any cwd."""
    from labelfree.core.imageio import find_label, list_images, load_instance_map
    from labelfree.sample import sample_dir

    out = tmp_path / "out"
    run_bundle_ok(BUNDLE, ("inference",), cwd=tmp_path, output_dir=out)
    for path in list_images(sample_dir() / "images"):
        stem = path.stem
        seg = np.asarray(Image.open(out / f"{stem}_seg.png")) > 0
        gt = load_instance_map(find_label(sample_dir() / "labels", path)) > 0
        assert 0.01 < seg.mean() < 0.97  # neither class empty nor collapsed
        # the class named "nuclei" without labels covers nuclei better than chance (its share of the tile)
        assert (seg & gt).sum() / gt.sum() > seg.mean()
        assert tifffile.imread(out / f"{stem}_inst.tif").max() > 0
