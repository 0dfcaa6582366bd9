"""DCGN bundle end to end through ``python -m monai.bundle run``: tiny training, inference, evaluation, errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from bundle_runner import (
    REPO,
    import_bundle_module,
    run_bundle,
    run_bundle_ok,
    run_inference_ok,
    write_synthetic_dataset,
)
from synthetic import synthetic_tile

BUNDLE = "dcgn"
_network = import_bundle_module(BUNDLE, "network")
# small crops and windows: the default recipe at native resolution, at a test's cost
FAST = {"patch_size": 128, "patches_per_tile": 2, "window_size": 256}


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
    assert "haematoxylin" in seg.text["dcgn_class_rule"] and seg.text["dcgn_nuclei_class"] == "2"
    assert seg.text["dcgn_num_classes"] == "3" and seg.text["dcgn_class_posterior"] == "mixture"
    assert np.asarray(seg).shape == (256, 256) and set(np.unique(np.asarray(seg))) <= {0, 1, 2}
    assert tifffile.imread(out / "tile0_inst.tif").shape == (256, 256)


def test_native_resolution_on_a_non_square_tile(trained, tmp_path):
    """A 200 x 330 tile is segmented at its own resolution by the sliding window: the network input is never
    stretched to a square, and every output has the tile's shape."""
    from monai.bundle import ConfigParser

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(synthetic_tile((200, 330), n_nuclei=20, seed=5).image).save(images / "wide.png")
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / BUNDLE / "configs" / "inference.json"))
    parser["bundle_root"] = str(REPO / "bundles" / BUNDLE)
    parser["dataset_dir"] = str(images)
    item = parser.get_parsed_content("preprocessing")({"image": str(images / "wide.png")})
    assert tuple(item["image"].shape) == (3, 200, 330)
    out = tmp_path / "out"
    run_bundle_ok(
        BUNDLE, ("inference",), cwd=tmp_path, dataset_dir=images, output_dir=out, ckpt_path=trained["model"], **FAST
    )
    assert np.asarray(Image.open(out / "wide_seg.png")).shape == (200, 330)
    assert tifffile.imread(out / "wide_inst.tif").shape == (200, 330)


def test_flip_averaging_is_an_option_off_by_default():
    """``--flip_tta True`` averages the tile and its 180° rotation (measured, not adopted: bench/results/dcgn_flips);
    the default is one pass."""
    from monai.bundle import ConfigParser

    from labelfree.engines.inferers import AutocastInferer, FlipEnsembleInferer

    for flip, kind in ((False, AutocastInferer), (True, FlipEnsembleInferer)):
        parser = ConfigParser()
        parser.read_config(str(REPO / "bundles" / BUNDLE / "configs" / "inference.json"))
        parser["bundle_root"] = str(REPO / "bundles" / BUNDLE)
        parser["flip_tta"] = flip
        inferer = parser.get_parsed_content("inferer")
        assert type(inferer) is kind
    assert inferer.flips == [(), (-2, -1)] and type(inferer.inferer) is AutocastInferer


@pytest.mark.parametrize(
    "overrides, channels",
    [({}, 2), ({"stain_normalisation": False}, 2), ({"mixture_on": "image", "stain_normalisation": False}, 3)],
)
def test_inference_reads_the_mixture_features_training_fitted(trained, overrides, channels):
    """The features the mixture posterior is computed on are those the mixture was trained on, of the tile as read
    (kept by the stain normalisation when it computed them anyway)."""
    from monai.bundle import ConfigParser

    from labelfree.core.imageio import load_rgb
    from labelfree.transforms.mixture_features import mixture_features

    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / BUNDLE / "configs" / "inference.json"))
    parser.update({"bundle_root": str(REPO / "bundles" / BUNDLE), **overrides})
    path = trained["images"] / "tile0.png"
    item = parser.get_parsed_content("preprocessing")({"image": str(path)})
    kind = "rgb" if overrides.get("mixture_on") == "image" else "stains"
    assert item["features"].shape == (channels, 256, 256)
    np.testing.assert_array_equal(np.asarray(item["features"]), mixture_features(load_rgb(path), kind))
    parser["class_posterior"] = "network"
    parser.parse()
    assert "features" not in parser.get_parsed_content("preprocessing")({"image": str(path)})


def test_training_reads_extra_unlabelled_folders_after_the_dataset(trained, tmp_path):
    """``extra_dataset_dirs`` adds every readable tile of more folders after ``dataset_dir``'s; by default none."""
    from monai.bundle import ConfigParser

    more = tmp_path / "more"
    more.mkdir()
    for i in range(2):
        Image.fromarray(synthetic_tile(64, seed=10 + i)[0]).save(more / f"extra{i}.png")
    (more / "notes.txt").write_text("not an image")

    def datalist(**overrides):
        parser = ConfigParser()
        parser.read_config(str(REPO / "bundles" / BUNDLE / "configs" / "train.json"))
        parser.update(
            {"bundle_root": str(REPO / "bundles" / BUNDLE), "dataset_dir": str(trained["images"]), **overrides}
        )
        return [Path(d["image"]).name for d in parser.get_parsed_content("train#datalist")]

    own = datalist()
    assert own == sorted(p.name for p in trained["images"].glob("*.png"))
    assert datalist(extra_dataset_dirs=[str(more)]) == own + ["extra0.png", "extra1.png"]


def test_half_scale_share_shows_tiles_and_their_features_at_half_size_and_is_off_by_default(trained):
    """``half_scale_share`` resizes that share of the tiles, image and mixture features alike, to half their size before
    the crops (area averaging); at 0, the default, the step is an identity and the tile keeps its size."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    def before_crops(**overrides):
        parser = ConfigParser()
        parser.read_config(str(REPO / "bundles" / BUNDLE / "configs" / "train.json"))
        parser.update({"bundle_root": str(REPO / "bundles" / BUNDLE), **overrides})
        steps = parser.get_parsed_content("train#preprocessing").transforms
        names = [type(t).__name__ for t in steps]
        head = Compose(steps[: names.index("RandSpatialCropSamplesd")])
        head.set_random_state(seed=0)
        return head({"image": str(trained["images"] / "tile0.png")})

    full = before_crops()
    assert full["image"].shape[1:] == full["features"].shape[1:] and full["image"].shape[1] >= 64
    halved = before_crops(half_scale_share=1.0)
    h, w = full["image"].shape[1:]
    assert tuple(halved["image"].shape) == (3, h // 2, w // 2)
    assert tuple(halved["features"].shape) == (full["features"].shape[0], h // 2, w // 2)
    # area averaging: each pixel is the mean of its 2 x 2 block
    block = np.asarray(full["image"])[:, :2, :2].mean(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(halved["image"])[:, 0, 0], block, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("overrides", [{}, {"stain_normalisation": False}])
def test_training_takes_the_stain_concentrations_once(trained, overrides, monkeypatch):
    """Training fits the mixture to the tile's stain concentrations; with stain normalisation on they are the ones the
    normalisation computes anyway (one stain separation per tile, as at inference), equal to ``mixture_features``."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    import labelfree.transforms.stain as stain
    import labelfree.transforms.stain_normalise as stain_normalise
    from labelfree.core.imageio import load_rgb
    from labelfree.transforms.mixture_features import mixture_features

    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / BUNDLE / "configs" / "train.json"))
    parser.update({"bundle_root": str(REPO / "bundles" / BUNDLE), **overrides})
    path = trained["images"] / "tile0.png"
    expected = mixture_features(load_rgb(path), "stains")
    calls = []
    # every separation goes through palette_stain_separation (separate_stains too): patched in every module that
    # calls it by its own imported name
    original = stain.palette_stain_separation
    for module in (stain, stain_normalise):
        monkeypatch.setattr(module, "palette_stain_separation", lambda *a, **k: calls.append(1) or original(*a, **k))
    # load, features, stain normalisation: the part of the training preprocessing before the random crops
    item = Compose(parser.get_parsed_content("train#preprocessing").transforms[:3])({"image": str(path)})
    np.testing.assert_array_equal(np.asarray(item["features"]), expected)
    assert len(calls) == 1


def test_paper_recipe_overlay_switches_to_two_classes_on_squashed_tiles(trained, tmp_path):
    """configs/paper.json lays the published recipe over both configs: K = 2, the mixture on the min-max RGB input,
    every tile resized to image_size."""
    model = tmp_path / "paper.pt"
    run_bundle_ok(
        BUNDLE,
        ("train", "paper"),
        cwd=tmp_path,
        dataset_dir=trained["images"],
        output_dir=tmp_path / "o",
        model_path=model,
        max_epochs=1,
        image_size=128,
    )
    assert torch.load(model, weights_only=True)["head.0.weight"].shape[0] == 2
    out = tmp_path / "out"
    run_bundle_ok(
        BUNDLE,
        ("inference", "paper"),
        cwd=tmp_path,
        dataset_dir=trained["images"],
        output_dir=out,
        ckpt_path=model,
        image_size=128,
    )
    seg = Image.open(out / "tile0_seg.png")
    assert seg.text["dcgn_nuclei_class"] == "1" and set(np.unique(np.asarray(seg))) <= {0, 255}
    assert seg.text["dcgn_class_posterior"] == "network"  # the published reading of the softmax
    assert np.asarray(seg).shape == (256, 256)


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
    """The README's DCGN command: the shipped model on the sample tiles, default settings, any cwd."""
    from labelfree.core.imageio import find_label, list_images, load_instance_map
    from labelfree.sample import sample_dir

    out = tmp_path / "out"
    run_bundle_ok(BUNDLE, ("inference",), cwd=tmp_path, output_dir=out)
    for path in list_images(sample_dir() / "images"):
        stem = path.stem
        seg_png = Image.open(out / f"{stem}_seg.png")
        seg = np.asarray(seg_png) == int(seg_png.text["dcgn_nuclei_class"]) * (
            255 if seg_png.text["dcgn_num_classes"] == "2" else 1
        )
        gt = load_instance_map(find_label(sample_dir() / "labels", path)) > 0
        assert 0.01 < seg.mean() < 0.97  # neither class empty nor collapsed
        # the class named "nuclei" without labels covers nuclei better than chance (its share of the tile)
        assert (seg & gt).sum() / gt.sum() > seg.mean()
        assert tifffile.imread(out / f"{stem}_inst.tif").max() > 0


def test_tissue_mode_writes_class_index_colour_map_and_legend(trained, tmp_path):
    out = tmp_path / "out"
    run_inference_ok(BUNDLE, trained, tmp_path, out, configs=("inference", "tissue"), **FAST)
    legend = json.loads((out / "tissue_legend.json").read_text())["classes"]
    assert [e["class"] for e in legend] == [0, 1, 2]
    seg = np.asarray(Image.open(out / "tile0_seg.png"))
    colour = np.asarray(Image.open(out / "tile0_tissue.png"))
    assert colour.shape == (256, 256, 3) and set(np.unique(seg)) <= {0, 1, 2}
    for e in legend:
        assert (colour[seg == e["class"]] == e["colour"]).all()
    assert (out / "tile0_overlay.png").is_file() and (out / "tile0_inst.tif").is_file()


def test_encoder_pretraining_writes_an_encoder_that_training_starts_from(trained, tmp_path):
    encoder = tmp_path / "encoder.pt"
    proc = run_bundle_ok(
        BUNDLE,
        ("train", "pretrain"),
        cwd=tmp_path,
        dataset_dir=trained["images"],
        extra_dataset_dirs=f"['{trained['images']}']",
        output_dir=tmp_path / "pre",
        encoder_path=encoder,
        max_epochs=1,
        log_every=1,
        **{k: v for k, v in FAST.items() if k != "window_size"},
    )
    assert "Iter: 6/6" in proc.stdout + proc.stderr  # the tiles of both folders: 2 × 3 steps
    sd = torch.load(encoder, weights_only=True)
    assert f"trained weights written to {encoder} (use them with train.json --pretrained_path)" in proc.stdout
    assert sd and all(k.startswith("features.") for k in sd)  # the encoder alone, in the torchvision layout
    net = _network.MobileNetV2UNet(out_channels=3, pretrained_path=str(encoder))
    assert torch.equal(net.features[0][0].weight, sd["features.0.0.weight"])
