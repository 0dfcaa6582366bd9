"""Unit tests of the modules every bundle run goes through, in process: loading and saving transforms, the output
writer, overlays, the bundle paths and shared parameters, and the evaluation/checkpoint handlers."""

import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from scipy import ndimage as ndi

from bundle_runner import REPO
from labelfree.bundle_paths import SHARED_CONFIG, check_bundle_root, shared_parameters
from labelfree.core.boundaries import inner_boundaries, thick_boundaries
from labelfree.core.overlay import contour_overlay, error_overlay
from labelfree.core.writer import output_paths, write_segmentation
from labelfree.engines.handlers import EvaluationReport, latest_checkpoint
from labelfree.transforms.instances import ProbabilityToInstancesd
from labelfree.transforms.io import LoadInstanceMapd, LoadRGBd, SaveSegmentationd, rgb_metatensor, tensor_to_rgb
from labelfree.transforms.scoring import InstanceScoresd


def _rgb(h=40, w=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_load_rgb_gives_channel_first_uint8_with_its_file_name(tmp_path):
    a = _rgb()
    Image.fromarray(a).save(tmp_path / "t.png")
    d = LoadRGBd("image")({"image": str(tmp_path / "t.png")})
    img = d["image"]
    assert img.dtype == torch.uint8 and tuple(img.shape) == (3, 40, 56)  # (C, H, W), not PIL's (C, W, H)
    assert np.array_equal(img.numpy().transpose(1, 2, 0), a)
    assert img.meta["filename_or_obj"] == str(tmp_path / "t.png")
    lab = np.arange(40 * 56, dtype=np.uint16).reshape(40, 56)
    Image.fromarray(lab).save(tmp_path / "l.png")
    d = LoadInstanceMapd("label")({"label": str(tmp_path / "l.png")})
    assert d["label"].shape == (1, 40, 56) and d["label"].dtype == torch.int64 and int(d["label"].max()) == lab.max()


def test_tensor_to_rgb_undoes_the_scaling_exactly():
    a = _rgb()
    chw = torch.from_numpy(a.transpose(2, 0, 1))
    assert np.array_equal(tensor_to_rgb(chw), a)
    assert np.array_equal(tensor_to_rgb(chw.float() / 255.0), a)  # the [0, 1] network input gives the same bytes
    dark = np.zeros((3, 8, 8), np.uint8)
    dark[0, 0, 0] = 1  # a uint8 tile whose maximum is 1 is not [0, 1] data: the dtype decides, not the values
    assert tensor_to_rgb(torch.from_numpy(dark)).max() == 1


def test_save_segmentation_writes_the_contract_from_the_network_input(tmp_path):
    a = _rgb()
    Image.fromarray(a).save(tmp_path / "t.png")
    d = LoadRGBd("image")({"image": str(tmp_path / "t.png")})
    d["image"] = d["image"].float() / 255.0
    inst = np.zeros((1, 40, 56), np.int32)
    inst[0, 5:15, 5:15], inst[0, 20:30, 30:50] = 1, 2
    d["inst"] = inst
    SaveSegmentationd("inst", output_dir=str(tmp_path / "out"))(d)
    paths = output_paths(tmp_path / "out", "t")
    assert np.array_equal(tifffile.imread(paths["inst"]), inst[0])
    assert np.array_equal(np.asarray(Image.open(paths["seg"])), (inst[0] > 0).astype(np.uint8) * 255)
    assert np.array_equal(np.asarray(Image.open(paths["overlay"])), contour_overlay(a, inst[0]))


@pytest.mark.parametrize("seed", range(3))
def test_boundaries_are_skimage_boundaries(seed):
    from skimage.segmentation import find_boundaries

    rng = np.random.default_rng(seed)
    labels = ndi.label(ndi.gaussian_filter(rng.random((70, 90)), 2) > 0.5)[0]
    labels[labels % 3 == 0] = 0  # background between some regions, regions touching others
    labels[:5, :5] = 7  # a region on the image border
    assert np.array_equal(inner_boundaries(labels), find_boundaries(labels, mode="inner"))
    assert np.array_equal(thick_boundaries(labels), find_boundaries(labels, mode="thick"))


def test_writer_widens_to_uint32_and_keeps_metadata(tmp_path):
    image = np.zeros((300, 300, 3), np.uint8)
    many = np.arange(300 * 300, dtype=np.int64).reshape(300, 300)  # 90,000 instances: more than uint16 holds
    paths = write_segmentation(tmp_path, "big", image, many, seg_text={"rule": "haematoxylin"})
    assert tifffile.imread(paths["inst"]).dtype == np.uint32
    assert Image.open(paths["seg"]).text["rule"] == "haematoxylin"
    with pytest.raises(ValueError, match="does not match"):
        write_segmentation(tmp_path, "bad", image, many[:10])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big_inst.tif", "big_overlay.png", "big_seg.png"]


def test_writer_adds_extra_maps_and_a_given_overlay_to_the_same_set(tmp_path):
    image = np.full((40, 48, 3), 200, np.uint8)
    inst = np.zeros((40, 48), np.int32)
    inst[5:10, 5:10] = 1
    colour, overlay = np.full((40, 48, 3), 7, np.uint8), np.full((40, 48, 3), 9, np.uint8)
    paths = write_segmentation(tmp_path, "t", image, inst, extra={"tissue": colour}, overlay=overlay)
    assert np.array_equal(np.asarray(Image.open(paths["tissue"])), colour) and paths["tissue"].name == "t_tissue.png"
    assert np.array_equal(np.asarray(Image.open(paths["overlay"])), overlay)
    for bad in ("seg", "not a name"):
        with pytest.raises(ValueError, match="new identifiers"):
            write_segmentation(tmp_path, "u", image, inst, extra={bad: colour})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t_inst.tif", "t_overlay.png", "t_seg.png", "t_tissue.png"]


def test_overlays_colour_only_what_they_should():
    a = np.full((40, 40, 3), 100, np.uint8)
    inst = np.zeros((40, 40), np.int32)
    inst[5:10, 5:10] = 1
    out = contour_overlay(a, inst)
    drawn = (out != a).any(axis=-1)
    assert drawn[5, 5:10].all() and not drawn[7, 7] and not drawn[0, 0]  # the inner boundary, not the inside
    err = error_overlay(a, inst, np.zeros_like(inst))
    assert (err[7, 7] != a[7, 7]).any() and err[7, 7, 0] > err[7, 7, 2]  # a false positive is yellow
    assert np.array_equal(err[0, 0], a[0, 0])


def test_probability_to_instances_is_empty_with_a_note_on_a_tile_without_tissue():
    prob = torch.zeros(2, 64, 64)
    prob[1, 10:30, 10:30] = 0.9
    tissue = {"image": torch.from_numpy(np.full((3, 64, 64), 120, np.uint8)), "pred": prob}
    tissue["image"][0] = 200  # pink: H&E-like
    out = ProbabilityToInstancesd("pred", threshold=0.5, min_size=10)(tissue)
    assert out["inst"].max() == 1 and "note" not in out
    black = ProbabilityToInstancesd("pred", threshold=0.5, min_size=10)({"image": torch.zeros(3, 64, 64), "pred": prob})
    assert black["inst"].max() == 0 and "no H&E tissue" in black["note"]


def test_instance_scores_transform():
    gt = np.zeros((1, 20, 20), np.int32)
    gt[0, 2:8, 2:8] = 1
    d = {"image": rgb_metatensor(np.zeros((20, 20, 3), np.uint8), "/x/tile7.png"), "inst": gt, "label": gt}
    s = InstanceScoresd("inst", label_key="label")(d)["scores"]
    assert s["image"] == "tile7" and s["dice"] == s["aji"] == 1.0 and s["pq"] == pytest.approx(1.0, abs=1e-5)


def test_check_bundle_root(tmp_path, monkeypatch):
    from labelfree.engines.runs import RunError

    assert check_bundle_root(REPO / "bundles" / "ssimnet") == str(REPO / "bundles" / "ssimnet")
    monkeypatch.chdir(REPO / "bundles" / "dcgn")
    assert check_bundle_root(".") == "."  # the configs' own value, run from the bundle folder as in the zoo
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunError, match="not a bundle folder .* pass --bundle_root"):
        check_bundle_root(".")


def test_shared_parameters_are_declared_once(tmp_path):
    """Every parameter in configs/common.json is read by train.json and inference.json, never declared again."""
    for bundle in ("ssimnet", "dcgn"):
        root = REPO / "bundles" / bundle
        shared = shared_parameters(root)
        assert shared and not any(k.startswith("_") for k in shared)
        for name in ("train.json", "inference.json"):
            config = json.loads((root / "configs" / name).read_text())
            for key in shared:
                assert config[key] == f"$@shared['{key}']", (bundle, name, key)
    with pytest.raises(FileNotFoundError, match=SHARED_CONFIG):
        shared_parameters(tmp_path)


def test_latest_checkpoint_and_evaluation_report(tmp_path, capsys):
    for n in (2, 10, 9):
        (tmp_path / f"checkpoint_epoch={n}.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path).name == "checkpoint_epoch=10.pt"
    assert latest_checkpoint(tmp_path / "none") is None
    from ignite.engine import Engine

    outputs = iter(
        [
            [{"scores": {"image": "a", "dice": 1.0, "aji": 0.5}}],
            [{}],
            [{"scores": {"image": "b", "dice": 0.0, "aji": 0.5}}],
        ]
    )
    engine = Engine(lambda e, b: next(outputs))
    EvaluationReport(str(tmp_path / "ev"), metrics=("dice", "aji")).attach(engine)
    engine.run([0, 1, 2], max_epochs=1)
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert report["n_images"] == 2 and report["mean"] == {"dice": 0.5, "aji": 0.5}
    assert (tmp_path / "ev" / "metrics_per_image.csv").read_text().splitlines()[-1] == "mean,0.5,0.5"
    assert "mean over 2 images" in capsys.readouterr().out
    empty = Engine(lambda e, b: [{}])
    EvaluationReport(str(tmp_path / "empty")).attach(empty)
    with pytest.raises(RuntimeError, match="no image was scored"):
        empty.run([0], max_epochs=1)


def test_log_lines_go_above_the_progress_bar_during_a_run():
    import logging

    from ignite.engine import Engine
    from tqdm.contrib.logging import _TqdmLoggingHandler

    from labelfree.engines.handlers import LogAboveProgressBar

    root = logging.getLogger()
    console = logging.StreamHandler()
    root.addHandler(console)
    seen = []
    try:
        engine = Engine(lambda e, b: seen.append(list(root.handlers)))
        LogAboveProgressBar().attach(engine)
        engine.run([0], max_epochs=1)
        assert any(isinstance(h, _TqdmLoggingHandler) for h in seen[0]) and console not in seen[0]  # while running
        assert console in root.handlers and not any(isinstance(h, _TqdmLoggingHandler) for h in root.handlers)
    finally:
        root.removeHandler(console)
