"""SSimNet bundle end to end: train → infer → evaluate through ``python -m monai.bundle run``, on synthetic tiles."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from bundle_runner import REPO, bundle_config, run_bundle, run_bundle_ok, run_inference_ok, write_synthetic_dataset

BUNDLE = "ssimnet"
FAST = {"patch_size": 128, "patches_per_axis": 3}  # small patches keep the CPU runs short


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _buffers(state_dict):
    """Entries of a state dict that are buffers, not parameters (the optimiser holds no state for them)."""
    return sum(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in state_dict)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for 2 epochs by train.json on synthetic tiles, run from an unrelated directory, with the
    default model_path: the weights land in the run folder and the shipped ones are left alone."""
    root = tmp_path_factory.mktemp("ssimnet")
    images, labels = write_synthetic_dataset(root / "data")
    shipped = [REPO / "bundles" / BUNDLE / "models" / f for f in ("model.pt", "model.optimizer.pth")]
    before = [sha(p) for p in shipped]
    proc = run_bundle_ok(
        BUNDLE,
        ("train",),
        cwd=root,
        dataset_dir=images,
        output_dir=root / "train_out",
        max_epochs=2,
        checkpoint_interval=1,
        **FAST,
    )
    assert [sha(p) for p in shipped] == before
    model = root / "train_out" / "model.pt"
    return {"root": root, "images": images, "labels": labels, "model": model, "log": proc.stdout + proc.stderr}


def test_training_writes_bare_weights_and_optimizer_and_caches_pseudo_labels(trained):
    ckpt = torch.load(trained["model"], weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in ckpt.values()) and any("conv" in k for k in ckpt)
    optim = torch.load(trained["model"].with_name("model.optimizer.pth"), weights_only=True)
    assert set(optim) == {"state", "param_groups"} and len(optim["state"]) == len(ckpt) - _buffers(ckpt)
    assert "train_loss" in trained["log"] and "Epoch[2] Complete" in trained["log"]
    assert f"trained weights written to {trained['model']}" in trained["log"]
    cache = list((trained["root"] / "train_out" / "pseudo_label_cache").glob("*.npz"))
    assert len(cache) == 3
    assert (trained["root"] / "train_out" / "checkpoints" / "checkpoint_epoch=2.pt").is_file()


def test_training_is_deterministic_and_resumes(trained, tmp_path):
    again = tmp_path / "model.pt"
    proc = run_bundle_ok(
        BUNDLE,
        ("train",),
        cwd=tmp_path,
        dataset_dir=trained["images"],
        output_dir=tmp_path / "out",
        model_path=again,
        max_epochs=2,
        checkpoint_interval=1,
        **FAST,
    )
    a = torch.load(trained["model"], weights_only=True)
    b = torch.load(again, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a second run with more epochs resumes from the saved epoch instead of starting over
    proc = run_bundle_ok(
        BUNDLE,
        ("train",),
        cwd=tmp_path,
        dataset_dir=trained["images"],
        output_dir=tmp_path / "out",
        model_path=again,
        max_epochs=3,
        checkpoint_interval=1,
        **FAST,
    )
    assert proc.returncode == 0 and "resuming from" in proc.stdout + proc.stderr
    assert "Epoch[1] Complete" not in proc.stdout + proc.stderr and "Epoch[3] Complete" in proc.stdout + proc.stderr


def _self_train(trained, out):
    return run_bundle_ok(
        BUNDLE,
        ("train", "self_train"),
        cwd=out.parent,
        dataset_dir=trained["images"],
        output_dir=out,
        teacher_path=trained["model"],
        max_epochs=1,
        tile_repeats=4,  # the recipe's shares of pasted (2) and half-scale (1) copies round to whole items
        batch_size=2,
        **FAST,
    )


@pytest.fixture(scope="module")
def self_trained(trained, tmp_path_factory):
    """One self-training round (self_train.json over train.json) with the tiny trained model as the teacher."""
    out = tmp_path_factory.mktemp("self_train") / "out"
    teacher = sha(trained["model"])
    proc = _self_train(trained, out)
    assert sha(trained["model"]) == teacher  # the teacher is read, never written
    return {"out": out, "log": proc.stdout + proc.stderr}


def test_self_training_round_labels_with_the_teacher_and_reports_agreement(trained, self_trained):
    out = self_trained["out"]
    assert "teacher labels" in self_trained["log"] and "round agreement" in self_trained["log"]
    assert len(list((out / "teacher_cache").glob("*.npz"))) == 6  # the teacher's maps and the student's
    agreement = json.loads((out / "round_agreement.json").read_text())
    assert 0.0 <= agreement["round_agreement"] <= 1.0 and agreement["tiles"] == 3
    student = torch.load(out / "model.pt", weights_only=True)
    teacher = torch.load(trained["model"], weights_only=True)
    assert student.keys() == teacher.keys()
    assert any(not torch.equal(student[k], teacher[k]) for k in student)  # it started there and moved


def test_the_agreement_caches_the_students_maps_as_a_next_teachers(trained, self_trained):
    """The round agreement segments the tiles with the student; cached under the student's digest, those maps are what
    a next round with this student as its teacher would compute (in another process), so it reads them instead."""
    from bundle_runner import import_bundle_module
    from labelfree.core.imageio import load_rgb

    st = import_bundle_module(BUNDLE, "self_training")
    student = self_trained["out"] / "model.pt"
    rule = st.teacher_rule()
    segment = st._segmenter(REPO / "bundles" / BUNDLE, student, "cpu", rule)
    tiles = sorted(Path(trained["images"]).glob("*.png"))
    assert tiles
    for tile in tiles:
        cached = st._teacher_file(self_trained["out"] / "teacher_cache", tile, st._digest(student), rule)
        with np.load(cached) as z:
            assert np.array_equal(z["teacher"], segment(load_rgb(tile), tile.name))


@pytest.mark.slow
def test_self_training_same_seed_same_bytes(trained, self_trained, tmp_path):
    _self_train(trained, tmp_path / "again")
    a = torch.load(self_trained["out"] / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "again" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_teacher_labels_leave_torchs_generator_alike_whether_cached_or_not(trained, tmp_path):
    """Building the teacher draws from torch's generator (its network's first weights), and the round's shuffling
    continues from there: a warm teacher cache (a rerun, or the recipe's next round reading what the last round's
    agreement cached) must leave the generator where a cold one does, or the same seed trains differently."""
    from bundle_runner import import_bundle_module

    st = import_bundle_module(BUNDLE, "self_training")
    states = []
    for _ in range(2):  # cold cache, then warm
        torch.manual_seed(0)
        st.teacher_datalist(
            trained["images"],
            tmp_path / "cache",
            bundle_root=REPO / "bundles" / BUNDLE,
            teacher_path=trained["model"],
            device="cpu",
            patch_size=FAST["patch_size"],
            progress=False,
        )
        states.append(torch.get_rng_state())
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3
    assert torch.equal(states[0], states[1])


def test_self_training_targets_mark_ignored_pixels_in_both_channels():
    from bundle_runner import import_bundle_module

    st = import_bundle_module(BUNDLE, "self_training")
    inst = np.zeros((20, 20), dtype=np.int32)
    inst[2:8, 2:8] = 1
    ignore = np.zeros((20, 20), dtype=bool)
    ignore[12:18, 12:18] = True
    soft, tri = st.self_training_targets(inst, ignore)
    assert soft.shape == tri.shape == (1, 20, 20)
    assert np.all(soft[0][ignore] == st.IGNORED) and np.all(tri[0][ignore] == 2)
    assert soft[0][inst > 0].min() >= 0.5 and np.all(soft[0][(inst == 0) & ~ignore] == 0)


def test_contact_ring_is_left_out_beyond_the_contact_line_only():
    from bundle_runner import import_bundle_module

    st = import_bundle_module(BUNDLE, "self_training")
    inst = np.zeros((16, 24), dtype=np.int32)
    inst[2:10, 2:12] = 1  # two rectangles touching along columns 11 | 12
    inst[2:10, 12:22] = 2
    inst[15, 0] = 3  # a lone one-pixel nucleus 6 px from the others: no ring
    none = np.zeros(inst.shape, dtype=bool)
    ring = st.contact_ring(inst, contact_width=1, ignore_width=3)
    # columns 9-10 and 13-14: within 3 px of the other nucleus, beyond the 1 px contact line (columns 11 and 12)
    expected = np.zeros(inst.shape, dtype=bool)
    expected[2:10, [9, 10, 13, 14]] = True
    assert np.array_equal(ring, expected)
    assert not st.contact_ring(inst, 1, 0).any()
    soft, tri = st.self_training_targets(inst, none, contact_value=0.0, contact_ignore_width=3)
    assert np.all(soft[0][ring] == st.IGNORED) and np.all(tri[0][ring] == 2)
    assert np.all(soft[0][:, 11:13][inst[:, 11:13] > 0] == 0.0)  # the contact line itself is still background
    plain_soft, plain_tri = st.self_training_targets(inst, none, contact_value=0.0)
    assert np.array_equal(soft[0][~ring], plain_soft[0][~ring]) and np.array_equal(tri[0][~ring], plain_tri[0][~ring])
    for bad in (1, 2.5, -1):
        with pytest.raises(ValueError, match="ring"):
            st.contact_ring(inst, 1, bad)


@pytest.fixture(scope="module")
def finetuned(trained, tmp_path_factory):
    """Inference with test-time fine-tuning (2 epochs at a high learning rate, so that it visibly changes the output)."""
    root = tmp_path_factory.mktemp("finetuned")
    before = sha(trained["model"])
    out = root / "out"
    run_inference_ok(BUNDLE, trained, root, out, finetune=True, finetune_epochs=2, finetune_lr=1e-3, **FAST)
    return {"out": out, "checkpoint_unchanged": sha(trained["model"]) == before}


def test_inference_contract_with_finetuning_leaves_checkpoint_untouched(finetuned):
    out = finetuned["out"]
    assert finetuned["checkpoint_unchanged"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"tile{i}_{k}" for i in range(3) for k in ("inst.tif", "seg.png", "overlay.png")
    )
    inst = tifffile.imread(out / "tile0_inst.tif")
    seg = np.asarray(Image.open(out / "tile0_seg.png"))
    assert inst.dtype in (np.uint16, np.uint32) and inst.shape == (256, 256)
    assert set(np.unique(seg)) <= {0, 255} and np.array_equal(seg > 0, inst > 0)
    assert np.asarray(Image.open(out / "tile0_overlay.png")).shape == (256, 256, 3)


def test_finetuning_changes_the_prediction_and_is_off_by_default(trained, finetuned, tmp_path):
    out = tmp_path / "off"
    run_inference_ok(BUNDLE, trained, tmp_path, out, finetune_epochs=2, finetune_lr=1e-3, **FAST)
    assert not np.array_equal(
        tifffile.imread(out / "tile1_inst.tif"), tifffile.imread(finetuned["out"] / "tile1_inst.tif")
    )


def test_evaluate_writes_csv_and_json(trained, tmp_path):
    out = tmp_path / "eval"
    proc = run_bundle_ok(
        BUNDLE,
        ("inference", "evaluate"),
        cwd=tmp_path,
        dataset_dir=trained["images"],
        labels_dir=trained["labels"],
        output_dir=out,
        ckpt_path=trained["model"],
        finetune=False,
        **FAST,
    )
    report = json.loads((out / "metrics.json").read_text())
    assert report["n_images"] == 3 and set(report["mean"]) >= {"dice", "aji", "aji_plus", "pq", "precision", "recall"}
    csv = (out / "metrics_per_image.csv").read_text().splitlines()
    assert csv[0].startswith("image,dice") and csv[-1].startswith("mean,") and len(csv) == 5
    assert "mean over 3 images" in proc.stdout


def test_missing_checkpoint_is_a_clear_error(trained, tmp_path):
    proc = run_bundle(
        BUNDLE,
        ("inference",),
        cwd=tmp_path,
        dataset_dir=trained["images"],
        output_dir=tmp_path / "out",
        ckpt_path=tmp_path / "nope.pt",
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"error: checkpoint not found: {tmp_path / 'nope.pt'}" in proc.stderr


def test_output_under_a_file_fails_in_one_line_before_any_work(trained, tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = run_bundle(
        BUNDLE,
        ("inference",),
        cwd=tmp_path,
        dataset_dir=trained["images"],
        output_dir=tmp_path / "afile" / "out",
        ckpt_path=trained["model"],
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "error: output folder" in proc.stderr and "a file is in the way" in proc.stderr
    assert "[1/3]" not in proc.stderr  # no tile was started


def test_multi_gpu_config_runs_with_gloo_on_two_processes(trained, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        bundle_config(BUNDLE, "train", "multi_gpu_train"),
        "--bundle_root",
        str(REPO / "bundles" / BUNDLE),
        "--dataset_dir",
        str(trained["images"]),
        "--output_dir",
        str(tmp_path / "out"),
        "--model_path",
        str(tmp_path / "ddp.pt"),
        "--max_epochs",
        "1",
        "--num_threads",
        "1",
        "--patch_size",
        "128",
        "--patches_per_axis",
        "3",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sd = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in sd)  # saved unwrapped, loadable by the single-process configs


def test_shipped_bundle_files():
    root = REPO / "bundles" / BUNDLE
    for f in ("LICENSE", "docs/README.md", "docs/data_license.txt", "configs/logging.conf", "models/model.pt",
              "models/model.optimizer.pth"):  # fmt: skip
        assert (root / f).is_file(), f
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    assert list(meta["network_data_format"]["inputs"]) == ["image"]
    assert list(meta["network_data_format"]["outputs"]) == ["pred"]


def test_finetuning_restarts_from_the_checkpoint_for_every_image(tmp_path):
    """The prediction for a tile must not depend on which tiles were fine-tuned before it (the optimiser state
    from the checkpoint is restored afresh, not carried over)."""
    from monai.inferers import SimpleInferer
    from monai.networks.nets import UNet

    from bundle_runner import import_bundle_module
    from synthetic import synthetic_tile

    finetune = import_bundle_module("ssimnet", "finetune")
    torch.manual_seed(0)
    net = UNet(2, 3, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.rand(2, 3, 64, 64)).mean().backward()
    opt.step()
    ckpt, optim = tmp_path / "model.pt", tmp_path / "model.optimizer.pth"
    torch.save(net.state_dict(), ckpt)
    torch.save(opt.state_dict(), optim)
    inferer = finetune.FineTuningInferer(
        SimpleInferer(),
        str(ckpt),
        str(optim),
        epochs=1,
        lr=1e-3,
        lam=0.9,
        patch_size=64,
        n_per_axis=2,
        alpha=0.7,
        n_clusters=3,
        contour_on="membership",
    )
    tiles = [torch.from_numpy(synthetic_tile(128, n_nuclei=12, seed=s).image.transpose(2, 0, 1)) for s in (3, 4)]
    x_a, x_b = (t[None].float() / 255.0 for t in tiles)
    net.eval()
    first = inferer(x_a, net)
    inferer(x_b, net)
    again = inferer(x_a, net)
    assert torch.equal(first, again)
    assert torch.equal(torch.load(optim, weights_only=True)["state"][0]["exp_avg"],
                       opt.state_dict()["state"][0]["exp_avg"])  # fmt: skip


def test_paper_overlay_restores_the_published_recipe():
    from monai.bundle import ConfigParser

    root = REPO / "bundles" / BUNDLE
    sys.path.insert(0, str(root))  # the configs name scripts.* as the zoo does, relative to the bundle
    try:
        for config in ("train", "inference"):
            parser = ConfigParser()
            parser.read_config([str(root / "configs" / f"{config}.json"), str(root / "configs" / "paper.json")])
            parser["bundle_root"] = str(root)
            assert parser.get_parsed_content("n_clusters") == 2
            assert parser.get_parsed_content("contour_on") == "lightness"
        assert parser.get_parsed_content("inferer").patch_kwargs["contour_on"] == "lightness"
        assert parser.get_parsed_content("threshold") == 0.5 and parser.get_parsed_content("flip_tta") is False
        assert parser.get_parsed_content("finetune") is True  # the paper fine-tunes at test time; the default does not
        default = ConfigParser()
        default.read_config(str(root / "configs" / "train.json"))
        default["bundle_root"] = str(root)
        assert default.get_parsed_content("n_clusters") == "auto"
    finally:
        sys.path.remove(str(root))


def test_the_second_view_is_the_tile_stain_normalised_to_the_training_colours_and_the_teacher_keeps_its_views(tile):
    """Inference averages the tile and its stain-normalised copy rotated by 180° (0.10.0); self-training's teacher
    still sees the tile twice as it is, the views the shipped checkpoint was trained with."""
    from monai.bundle import ConfigParser

    from bundle_runner import import_bundle_module
    from labelfree.transforms.stain_normalise import normalise_stains

    root = REPO / "bundles" / BUNDLE
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    flips = parser.get_parsed_content("flip_inferer")
    assert flips.flips == [(), (-2, -1)] and flips.recoloured == [False, True]
    ref = parser.get_parsed_content("stain_reference")
    chw = torch.as_tensor(tile.image).permute(2, 0, 1).float() / 255.0
    expected = normalise_stains(
        tile.image, reference_stains=ref["stains"], reference_max_concentrations=ref["max_concentrations"]
    )
    torch.testing.assert_close(flips.recolour(chw), torch.as_tensor(expected).permute(2, 0, 1).float() / 255.0)
    st = import_bundle_module(BUNDLE, "self_training")
    assert st.TEACHER_OVERRIDES["stain_view"] is False
    for overrides in (st.TEACHER_OVERRIDES, {"flips": [[]]}):  # the teacher's views; one pass: the tile itself
        again = ConfigParser()
        again.read_config(str(root / "configs" / "inference.json"))
        again.update(dict(overrides))
        assert not any(again.get_parsed_content("flip_inferer").recoloured)
    assert st.teacher_rule() == st.TEACHER_OVERRIDES  # the shipped recipe's teacher, and its cache key, unchanged
    assert st.teacher_rule(True) == {**st.TEACHER_OVERRIDES, "stain_view": True}
    tile_file = REPO / "labelfree" / "sample" / "images"
    first = sorted(tile_file.glob("*.png"))[0]
    keys = {st._teacher_file(Path("c"), first, "d", st.teacher_rule(v)).name for v in (False, True)}
    assert len(keys) == 2 and st._teacher_file(Path("c"), first, "d").name in keys
    # the auto-scaled teacher: its own cache key, and the default's key unchanged by the option's existence
    assert st.teacher_rule(False, True) == {**st.TEACHER_OVERRIDES, "auto_scale": True}
    scaled = st._teacher_file(Path("c"), first, "d", st.teacher_rule(False, True)).name
    assert scaled not in keys
    # the teacher's own marker depth: in the rule (and its cache key) only when set
    assert st.teacher_rule(marker_depth=1) == {**st.TEACHER_OVERRIDES, "marker_depth": 1.0}
    shallow = st._teacher_file(Path("c"), first, "d", st.teacher_rule(marker_depth=1.0)).name
    assert shallow not in keys | {scaled}
    four = [[], [-1], [-2], [-2, -1]]  # the teacher's own views likewise
    assert st.teacher_rule(flips=four) == {**st.TEACHER_OVERRIDES, "flips": four}
    assert st._teacher_file(Path("c"), first, "d", st.teacher_rule(flips=four)).name not in keys | {scaled, shallow}
    assert st.teacher_rule(resplit_irregular=False) == {**st.TEACHER_OVERRIDES, "resplit_irregular": False}
    four = ConfigParser()
    four.read_config(str(root / "configs" / "inference.json"))
    four.update({"flips": [[], [-1], [-2], [-2, -1]]})
    assert four.get_parsed_content("flip_inferer").recoloured == [False, True, False, True]


def test_the_network_leaves_the_cores_to_post_processing_by_default():
    """One torch thread while two post-processing threads work behind it (on two cores, faster than 2 + 2 at the
    same outputs); two when post-processing runs in the foreground or the tile is fine-tuned on."""
    from monai.bundle import ConfigParser

    root = REPO / "bundles" / BUNDLE
    for overrides, threads in (({}, 1), ({"postprocessing_threads": 0}, 2), ({"finetune": True}, 2)):
        parser = ConfigParser()
        parser.read_config(str(root / "configs" / "inference.json"))
        parser.update(overrides)
        assert parser.get_parsed_content("num_threads") == threads, overrides


def _tile_with_cached_teacher(st, tmp_path, rgb: np.ndarray, inst: np.ndarray) -> tuple[Path, Path, Path]:
    """A folder holding ``rgb`` as its one tile, an untrained teacher checkpoint and a cache holding ``inst`` as that
    teacher's prediction of the tile, so ``teacher_datalist`` reads it back and no network runs (the teacher is built,
    as it always is, but never called)."""
    from monai.networks.nets import UNet

    (tmp_path / "tiles").mkdir()
    Image.fromarray(rgb).save(tmp_path / "tiles" / "t.png")
    teacher = tmp_path / "teacher.pt"
    torch.manual_seed(0)
    net = UNet(2, 3, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=0)
    torch.save(net.state_dict(), teacher)
    cache = tmp_path / "cache"
    cache.mkdir()
    with open(st._teacher_file(cache, tmp_path / "tiles" / "t.png", st._digest(teacher)), "wb") as fh:
        np.savez_compressed(fh, teacher=inst)
    return tmp_path / "tiles", cache, teacher


def test_teacher_datalist_purifies_the_cached_teacher_nuclei_unless_told_not_to(tmp_path):
    """The teacher's cached prediction is read back (no network runs); purification leaves the faint disc, the speck
    and the sliver of the hand-made tile out of both targets, and purify=False trusts them."""
    from bundle_runner import import_bundle_module
    from test_purify_objects import _tile

    st = import_bundle_module(BUNDLE, "self_training")
    rgb, inst, ids = _tile()
    tiles, cache, teacher = _tile_with_cached_teacher(st, tmp_path, rgb, inst)
    common = dict(bundle_root=REPO / "bundles" / BUNDLE, teacher_path=teacher, repeats=3, patch_size=64, progress=False)
    items = st.teacher_datalist(tiles, cache, **common)
    assert len(items) == 3 and items[0]["image"].shape == (3, *inst.shape)
    soft, tri = items[0]["soft"][0], items[0]["voronoi"][0]
    for name in ("faint", "speck", "sliver"):
        assert np.all(soft[inst == ids[name]] == st.IGNORED) and np.all(tri[inst == ids[name]] == 2), name
    assert soft[inst == ids["nucleus0"]].min() >= 0.5
    trusting = st.teacher_datalist(tiles, cache, purify=False, **common)[0]
    assert trusting["soft"].min() >= 0.0 and trusting["soft"][0][inst == ids["sliver"]].min() >= 0.5


def test_teacher_datalist_adds_copies_with_pasted_touching_nuclei(tmp_path):
    """``paste_share`` of a tile's items are synthetic copies (labelfree.transforms.paste_nuclei): the same tile
    with more labelled nuclei, a contact line between each pasted nucleus and its host, the same every run."""
    from bundle_runner import import_bundle_module
    from test_paste_nuclei import _discs

    st = import_bundle_module(BUNDLE, "self_training")
    rgb, inst = _discs()
    tiles, cache, teacher = _tile_with_cached_teacher(st, tmp_path, rgb, inst)
    common = dict(bundle_root=REPO / "bundles" / BUNDLE, teacher_path=teacher, repeats=4, patch_size=64, progress=False)
    items = st.teacher_datalist(tiles, cache, paste_share=0.5, paste_fraction=0.5, **common)
    again = st.teacher_datalist(tiles, cache, paste_share=0.5, paste_fraction=0.5, **common)
    assert len(items) == 4
    plain, pasted = items[:2], items[2:]
    assert all(np.array_equal(p["image"], plain[0]["image"]) for p in plain)
    assert not np.array_equal(pasted[0]["image"], pasted[1]["image"])
    for item, twin in zip(pasted, again[2:]):
        assert np.array_equal(item["image"], twin["image"]) and np.array_equal(item["soft"], twin["soft"])
        # more nucleus pixels than the tile's own, and contact lines (the rim value) where pasted nuclei touch
        assert (item["soft"] > 0).sum() > (plain[0]["soft"] > 0).sum()
        assert (item["voronoi"] == 1).sum() > (plain[0]["voronoi"] == 1).sum()


def test_teacher_datalist_adds_half_scale_copies_of_the_tile_and_its_targets(tmp_path):
    """``half_scale_share`` of a tile's items show the tile and its teacher targets at half the size (taken from the
    plain copies, not the pasted ones): the same nuclei, as many of them, each with a quarter of its area. A tile whose
    half is smaller than the crop keeps plain copies only."""
    from bundle_runner import import_bundle_module
    from test_paste_nuclei import _discs

    st = import_bundle_module(BUNDLE, "self_training")
    rgb, inst = _discs()
    tiles, cache, teacher = _tile_with_cached_teacher(st, tmp_path, rgb, inst)
    common = dict(bundle_root=REPO / "bundles" / BUNDLE, teacher_path=teacher, repeats=4, progress=False)
    plain = st.teacher_datalist(tiles, cache, patch_size=64, **common)
    items = st.teacher_datalist(tiles, cache, patch_size=64, half_scale_share=0.5, **common)
    assert [item["image"].shape[1:] for item in items] == [inst.shape] * 2 + [
        (inst.shape[0] // 2, inst.shape[1] // 2)
    ] * 2
    assert all(np.array_equal(a["soft"], b["soft"]) for a, b in zip(items[:2], plain))
    full, half = items[0], items[2]
    # one Voronoi centre per nucleus at either scale; a quarter of the labelled nucleus pixels
    assert (half["voronoi"] == 1).sum() == (full["voronoi"] == 1).sum()
    ratio = (half["soft"] > 0).sum() / (full["soft"] > 0).sum()
    assert 0.2 < ratio < 0.3
    pasted = st.teacher_datalist(tiles, cache, patch_size=64, half_scale_share=0.5, paste_share=0.5, **common)
    # the halves come out of the plain copies: here all of them, and the pasted copies stay at full size
    assert [item["image"].shape[1] for item in pasted] == [inst.shape[0] // 2] * 2 + [inst.shape[0]] * 2
    too_small = st.teacher_datalist(tiles, cache, patch_size=inst.shape[0] // 2 + 1, half_scale_share=0.5, **common)
    assert all(item["image"].shape[1:] == inst.shape for item in too_small)


def test_teacher_datalist_adds_double_scale_copies_after_the_half_scale_ones(tmp_path):
    """``double_scale_share`` of a tile's items show the tile and its teacher targets at twice the size, taken from the
    plain copies after the half-scale ones: the same nuclei, as many of them, each with four times its area. 0 leaves
    the items as they were."""
    from bundle_runner import import_bundle_module
    from test_paste_nuclei import _discs

    st = import_bundle_module(BUNDLE, "self_training")
    rgb, inst = _discs()
    tiles, cache, teacher = _tile_with_cached_teacher(st, tmp_path, rgb, inst)
    common = dict(bundle_root=REPO / "bundles" / BUNDLE, teacher_path=teacher, repeats=4, progress=False)
    half = st.teacher_datalist(tiles, cache, patch_size=64, half_scale_share=0.25, **common)
    items = st.teacher_datalist(tiles, cache, patch_size=64, half_scale_share=0.25, double_scale_share=0.25, **common)
    h, w = inst.shape
    assert [item["image"].shape[1:] for item in items] == [(h, w)] * 2 + [(h // 2, w // 2), (2 * h, 2 * w)]
    assert all(np.array_equal(a["soft"], b["soft"]) for a, b in zip(items[:3], [half[0], half[1], half[3]]))
    full, double = items[0], items[3]
    # one Voronoi centre per nucleus at either scale; four times the labelled nucleus pixels
    assert (double["voronoi"] == 1).sum() == (full["voronoi"] == 1).sum()
    ratio = (double["soft"] > 0).sum() / (full["soft"] > 0).sum()
    assert 3.6 < ratio < 4.4
    # more doubles than plain copies left: only the plain ones are taken, the half-scale ones stay
    capped = st.teacher_datalist(tiles, cache, patch_size=64, half_scale_share=0.5, double_scale_share=1.0, **common)
    assert [item["image"].shape[1] for item in capped] == [h // 2] * 2 + [2 * h] * 2
    off = st.teacher_datalist(tiles, cache, patch_size=64, half_scale_share=0.25, double_scale_share=0.0, **common)
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(off, half))


def test_teacher_keeps_the_objects_inference_drops_and_its_cache_follows_that_rule(tmp_path, monkeypatch):
    """The teacher (and the round agreement's student) segment with every object kept: the objects 0.6.0's inference
    drops would otherwise become confident background in the targets. The cache key changes with that rule."""
    import labelfree.engines.slides as slides
    from bundle_runner import import_bundle_module
    from test_paste_nuclei import _discs

    st = import_bundle_module(BUNDLE, "self_training")
    rgb, inst = _discs()
    seen = []

    class FakeSegmenter:
        def __init__(self, bundle_root, device=None, overrides=None):
            seen.append(dict(overrides))

        def __call__(self, rgb, name):
            return inst

    monkeypatch.setattr(slides, "BundleTileSegmenter", FakeSegmenter)
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    Image.fromarray(rgb).save(tiles / "t.png")
    teacher = tmp_path / "teacher.pt"
    torch.save({"w": torch.zeros(1)}, teacher)
    common = dict(bundle_root=REPO / "bundles" / BUNDLE, teacher_path=teacher, device="cpu")
    st.teacher_datalist(tiles, tmp_path / "cache", repeats=1, patch_size=64, progress=False, **common)
    st.round_agreement(tiles, tmp_path / "cache", student_path=teacher, **common)
    assert len(seen) == 2 and all(o["min_mean_prob"] == 0.0 and o["ckpt_path"] == str(teacher) for o in seen)
    assert all(o["min_rel_area"] == 0.0 for o in seen)  # small objects are left to purification, not dropped
    key = st._teacher_file(tmp_path, tiles / "t.png", "d")
    monkeypatch.setattr(st, "TEACHER_OVERRIDES", {"min_mean_prob": 0.5})
    assert st._teacher_file(tmp_path, tiles / "t.png", "d") != key


def test_teacher_datalist_adds_the_distance_target_of_the_confident_nuclei(tmp_path):
    """``distance_head``: every item, pasted copies included, gets ``dist``, each confident nucleus pixel's distance
    to its own edge in DISTANCE_UNIT pixels, and the ignored pixels (the purified-out objects) marked as left out."""
    from bundle_runner import import_bundle_module
    from test_purify_objects import _tile

    from labelfree.transforms.edge_distance import DISTANCE_UNIT, edge_distance

    st = import_bundle_module(BUNDLE, "self_training")
    rgb, inst, ids = _tile()
    tiles, cache, teacher = _tile_with_cached_teacher(st, tmp_path, rgb, inst)
    common = dict(bundle_root=REPO / "bundles" / BUNDLE, teacher_path=teacher, repeats=2, patch_size=64, progress=False)
    items = st.teacher_datalist(tiles, cache, distance_head=True, paste_share=0.5, **common)
    plain = st.teacher_datalist(tiles, cache, paste_share=0.5, **common)
    assert all("dist" not in item for item in plain) and all(item["dist"].shape == (1, *inst.shape) for item in items)
    dist = items[0]["dist"][0]
    ignored = items[0]["soft"][0] == st.IGNORED
    assert np.all(dist[ignored] == st.IGNORED) and np.all(dist[~ignored] >= 0)
    nucleus = inst == ids["nucleus0"]
    np.testing.assert_allclose(dist[nucleus], edge_distance(np.where(nucleus, 1, 0))[nucleus] / DISTANCE_UNIT)
    for item, twin in zip(items, plain):  # the segmentation targets do not change
        assert np.array_equal(item["soft"], twin["soft"]) and np.array_equal(item["voronoi"], twin["voronoi"])


def test_teacher_datalist_adds_the_border_weight_of_the_confident_nuclei(tmp_path):
    """``border_weight``: every item, pasted copies included, gets ``weight``, the U-Net separation weight of its own
    confident nuclei (pasted ones included), and the segmentation targets stay as they were."""
    from bundle_runner import import_bundle_module
    from test_paste_nuclei import _discs

    from labelfree.transforms.border_weight import border_weight

    st = import_bundle_module(BUNDLE, "self_training")
    rgb, inst = _discs()
    tiles, cache, teacher = _tile_with_cached_teacher(st, tmp_path, rgb, inst)
    common = dict(bundle_root=REPO / "bundles" / BUNDLE, teacher_path=teacher, repeats=2, patch_size=64, progress=False)
    items = st.teacher_datalist(tiles, cache, border_weight=True, paste_share=0.5, **common)
    plain = st.teacher_datalist(tiles, cache, paste_share=0.5, **common)
    assert all("weight" not in item for item in plain) and len(items) == len(plain) == 2
    for item, twin in zip(items, plain):
        assert item["weight"].shape == (1, *inst.shape) and item["weight"].dtype == np.float32
        assert np.array_equal(item["soft"], twin["soft"]) and np.array_equal(item["voronoi"], twin["voronoi"])
    kept, _ = st.purify_instances(rgb, inst)
    np.testing.assert_array_equal(items[0]["weight"][0], border_weight(kept))
    # the pasted copy's weight follows its own nuclei: heavier somewhere than the plain tile's
    assert items[1]["weight"].max() >= 1.0 and not np.array_equal(items[1]["weight"], items[0]["weight"])


def test_a_student_with_a_distance_output_starts_from_its_teachers_segmentation(tmp_path):
    from bundle_runner import import_bundle_module
    from monai.networks.nets import UNet

    from labelfree.engines.handlers import checkpoint_outputs

    st = import_bundle_module(BUNDLE, "self_training")
    config = dict(spatial_dims=2, in_channels=3, channels=(4, 8), strides=(2,), num_res_units=0)
    torch.manual_seed(0)
    teacher = UNet(out_channels=2, **config)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    student = st.student(UNet(out_channels=3, **config), tmp_path / "teacher.pt")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        out, ref = student.eval()(x), teacher.eval()(x)
    assert out.shape == (1, 3, 16, 16) and torch.allclose(out[:, :2], ref) and torch.all(out[:, 2] == 0)
    torch.save(student.state_dict(), tmp_path / "student.pt")
    assert checkpoint_outputs(tmp_path / "teacher.pt") == 2 and checkpoint_outputs(tmp_path / "student.pt") == 3
    assert checkpoint_outputs(tmp_path / "missing.pt") == 2
    with pytest.raises(RuntimeError):  # anything else that does not fit is still an error
        st.student(UNet(out_channels=4, **config), tmp_path / "teacher.pt")


def test_a_rounds_student_starts_from_the_teacher_or_from_student_init_path(tmp_path):
    from monai.bundle import ConfigParser

    from labelfree.engines.slides import use_bundle_scripts

    torch.manual_seed(0)
    root = REPO / "bundles" / BUNDLE
    use_bundle_scripts(root)  # the config's student is scripts.self_training.student

    def round_config(**overrides) -> ConfigParser:
        parser = ConfigParser()
        parser.read_config([str(root / "configs" / "train.json"), str(root / "configs" / "self_train.json")])
        parser.update({"bundle_root": str(root), "teacher_path": str(tmp_path / "teacher.pt"), **overrides})
        return parser

    weights = {}
    for name in ("teacher", "base"):
        net = round_config().get_parsed_content("network_def")
        for p in net.parameters():
            torch.nn.init.normal_(p)
        weights[name] = {k: v.clone() for k, v in net.state_dict().items()}
        torch.save(net.state_dict(), tmp_path / f"{name}.pt")
    for overrides, expected in (({}, "teacher"), ({"student_init_path": str(tmp_path / "base.pt")}, "base")):
        state = round_config(**overrides).get_parsed_content("student").state_dict()
        assert all(torch.equal(state[k], weights[expected][k]) for k in state)


def _one_epoch_round(trained: dict, tmp_path: Path, **options) -> dict:
    """One self-training round of one epoch over the ``trained`` fixture's tiles and checkpoint, with ``options``
    (``self_train.json`` overrides); returns the student's state dict, after checking the round agreement ran."""
    out = tmp_path / "round"
    run_bundle_ok(
        BUNDLE,
        ("train", "self_train"),
        cwd=tmp_path,
        dataset_dir=trained["images"],
        output_dir=out,
        teacher_path=trained["model"],
        max_epochs=1,
        tile_repeats=4,  # the recipe's shares of pasted (2) and half-scale (1) copies round to whole items
        batch_size=2,
        **options,
        **FAST,
    )
    assert json.loads((out / "round_agreement.json").read_text())["tiles"] == 3
    return torch.load(out / "model.pt", weights_only=True)


def test_a_round_with_ema_epochs_keeps_the_average_of_its_weights(trained, tmp_path):
    """With ``ema_epochs`` the round's model is the moving average of the student's weights, which the checkpoint keeps
    beside the last weights (so a resumed round goes on averaging)."""
    student = _one_epoch_round(trained, tmp_path, ema_epochs=1, checkpoint_interval=1)
    ckpt = torch.load(next((tmp_path / "round" / "checkpoints").glob("*.pt")), weights_only=True)
    assert all(torch.equal(student[k], ckpt["ema_model"][k]) for k in student)
    assert any(not torch.equal(student[k], ckpt["model"][k]) for k in student)  # the average lags the last step


def test_self_training_round_with_a_distance_output_and_its_inference(trained, tmp_path):
    """A round with ``distance_head``: the student has a third output, and inference.json, given that checkpoint,
    builds the matching network by itself and writes instances."""
    student = _one_epoch_round(trained, tmp_path, distance_head=True)
    assert student["model.2.conv.bias"].shape == (3,)
    out = tmp_path / "round"
    pred = tmp_path / "pred"
    run_inference_ok(BUNDLE, {**trained, "model": out / "model.pt"}, tmp_path, pred, **FAST)
    inst = tifffile.imread(pred / "tile0_inst.tif")
    assert inst.shape == (256, 256)


@pytest.mark.slow
def test_self_training_round_with_the_border_weight(trained, tmp_path):
    """A round with ``border_weight`` on both sides of a gap: the weight reaches the loss as the target's last channel
    and the round trains a two-output student."""
    student = _one_epoch_round(trained, tmp_path, border_weight=True, border_weight_on_nuclei=True)
    assert student["model.2.conv.bias"].shape == (2,)


def test_the_distance_relief_follows_the_option_and_the_network_follows_the_checkpoint(tmp_path):
    from monai.bundle import ConfigParser

    from labelfree.transforms.instances import ProbabilityToInstancesd

    root = REPO / "bundles" / BUNDLE
    shipped = root / "models" / "model.pt"
    grown = torch.load(shipped, weights_only=True)
    grown["model.2.conv.weight"] = torch.cat([grown["model.2.conv.weight"], grown["model.2.conv.weight"][:, :1]], 1)
    grown["model.2.conv.bias"] = torch.cat([grown["model.2.conv.bias"], torch.zeros(1)])
    torch.save(grown, tmp_path / "grown.pt")
    for ckpt, relief, outputs, key in (
        (shipped, True, 2, "distance"),
        (tmp_path / "grown.pt", True, 3, "distance"),
        (tmp_path / "grown.pt", False, 3, None),
    ):
        parser = ConfigParser()
        parser.read_config(str(root / "configs" / "inference.json"))
        parser.update({"bundle_root": str(root), "ckpt_path": str(ckpt), "distance_relief": relief})
        assert parser.get_parsed_content("network_def#out_channels") == outputs
        post = parser.get_parsed_content("postprocessing").transforms
        step = next(t for t in post if isinstance(t, ProbabilityToInstancesd))
        assert step.distance_key == key


def test_teacher_datalist_can_leave_dark_background_out_of_the_loss(tmp_path):
    """``ignore_dark_background``: a nucleus the teacher missed is left out of both targets instead of being taught as
    background; the confident nuclei's targets do not change."""
    from bundle_runner import import_bundle_module
    from test_purify_objects import _tile

    st = import_bundle_module(BUNDLE, "self_training")
    rgb, inst, ids = _tile()
    missed = inst == ids["nucleus7"]
    tiles, cache, teacher = _tile_with_cached_teacher(st, tmp_path, rgb, np.where(missed, 0, inst))
    common = dict(bundle_root=REPO / "bundles" / BUNDLE, teacher_path=teacher, repeats=1, patch_size=64, progress=False)
    plain = st.teacher_datalist(tiles, cache, **common)[0]
    dark = st.teacher_datalist(tiles, cache, ignore_dark_background=True, **common)[0]
    assert np.all(plain["soft"][0][missed] == 0)
    left_out = dark["soft"][0] == st.IGNORED
    assert left_out[missed].mean() > 0.8 and np.all(dark["voronoi"][0][left_out] == 2)
    nuclei = inst == ids["nucleus0"]
    assert np.array_equal(dark["soft"][0][nuclei], plain["soft"][0][nuclei])


def test_stain_jitter_is_off_by_default_last_in_the_chain_and_moves_only_the_image_colours():
    """``stain_jitter_prob`` adds HED jitter after the other augmentations: at 0 (the default) the crops are those of the
    chain without it, draw for draw, so existing recipes train byte for byte as before; at 1 the image changes and the
    targets do not."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    root = REPO / "bundles" / BUNDLE
    rng = np.random.default_rng(0)
    sample = {
        "image": rng.integers(0, 256, (3, 32, 32)).astype(np.float32),
        "soft": rng.random((1, 32, 32), dtype=np.float32),
        "voronoi": rng.integers(0, 3, (1, 32, 32)).astype(np.float32),
        "source": "tile.png",
    }

    def chain(prob):
        parser = ConfigParser()
        parser.read_config(str(root / "configs" / "train.json"))
        parser["bundle_root"] = str(root)
        if prob is not None:
            parser["stain_jitter_prob"] = prob
        return parser, parser.get_parsed_content("train#preprocessing")

    parser, default = chain(None)
    assert parser.get_parsed_content("stain_jitter_prob") == 0.0
    assert type(default.transforms[-1]).__name__ == "RandHEDJitterd"
    without = Compose(list(chain(None)[1].transforms[:-1]))  # a second parse: no transform object is shared
    for compose in (default, without):
        compose.set_random_state(seed=3)
    for _ in range(4):
        a, b = default(dict(sample)), without(dict(sample))
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])

    _, off = chain(0.0)
    _, on = chain(1.0)
    for compose in (off, on):
        compose.set_random_state(seed=3)
    a, b = off(dict(sample)), on(dict(sample))
    assert torch.equal(a["label"], b["label"])
    assert not torch.allclose(a["image"], b["image"])
    assert float(b["image"].min()) >= 0.0 and float(b["image"].max()) <= 1.0


def test_training_augments_plain_tensors_to_the_same_values_as_with_metadata():
    """train.json turns MONAI's metadata tracking off (``track_meta``): its augmentations then skip building
    MetaTensors (about half a second of an 8-second base epoch on 2 cores) and give the same values for the same
    draws, so a checkpoint trained either way has the same bytes."""
    from monai.bundle import ConfigParser
    from monai.data import MetaTensor, set_track_meta

    root = REPO / "bundles" / BUNDLE
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "train.json"))
    parser["bundle_root"] = str(root)
    assert parser["track_meta"] is False and "$monai.data.set_track_meta(@track_meta)" in parser["initialize"]
    rng = np.random.default_rng(0)
    item = {
        "image": rng.integers(0, 256, (3, 48, 48), dtype=np.uint8),
        "soft": rng.random((1, 48, 48), dtype=np.float32),
        "voronoi": rng.integers(0, 3, (1, 48, 48), dtype=np.uint8),
        "source": "t.png",
    }
    runs = {}
    try:
        for track in (True, False):
            set_track_meta(track)
            preprocessing = parser.get_parsed_content("train#preprocessing", lazy=False)
            preprocessing.set_random_state(0)
            runs[track] = [preprocessing(dict(item)) for _ in range(8)]
    finally:
        set_track_meta(True)
    for with_meta, without in zip(runs[True], runs[False]):
        assert isinstance(with_meta["image"], MetaTensor) and not isinstance(without["image"], MetaTensor)
        for key in ("image", "label"):
            assert torch.equal(with_meta[key].as_tensor(), without[key])
    assert not all(torch.equal(runs[False][0]["image"], r["image"]) for r in runs[False][1:])  # the draws differ
