"""labelfree.engines.runs and labelfree.engines.handlers.SaveTrainedWeights, in process: the glue every bundle run goes through."""

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from PIL import Image

from labelfree.engines.handlers import SaveTrainedWeights, optimizer_path
from labelfree.core.imageio import InvalidImageError
from labelfree.engines.runs import (
    ERROR_KEY,
    FAILURES_FILE,
    FaultTolerantEvaluator,
    GuardedDataset,
    RunError,
    check_checkpoint,
    check_output_dir,
    finish_run,
    image_datalist,
    install_error_handling,
    readable_images,
    user_error,
    write_failures,
)
from labelfree.transforms.io import LoadRGBd
from labelfree.core.writer import write_segmentation


def _tile(path, size=48, value=None):
    rng = np.random.default_rng(0)
    arr = (
        rng.integers(60, 200, size=(size, size, 3), dtype=np.uint8)
        if value is None
        else np.full((size, size, 3), value, np.uint8)
    )
    Image.fromarray(arr).save(path)
    return arr


def test_check_output_dir(tmp_path):
    assert check_output_dir(tmp_path / "new" / "deeper") == str(tmp_path / "new" / "deeper")
    assert (tmp_path / "new" / "deeper").is_dir() and not list((tmp_path / "new" / "deeper").iterdir())
    (tmp_path / "f").write_text("x")
    for bad in (tmp_path / "f", tmp_path / "f" / "sub"):
        with pytest.raises(RunError, match="a file is in the way"):
            check_output_dir(bad)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_check_output_dir_unwritable(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(RunError, match="not writable"):
        check_output_dir(ro)


def test_check_checkpoint(tmp_path):
    with pytest.raises(RunError, match="checkpoint not found: .*nope.pt; train one"):
        check_checkpoint(tmp_path / "nope.pt", "train one")
    good = tmp_path / "m.pt"
    torch.save({"w": torch.ones(1000)}, good)
    assert check_checkpoint(good) == str(good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:500])
    with pytest.raises(RunError, match="cannot be read .* truncated"):
        check_checkpoint(cut)


def test_image_datalist(tmp_path, capsys):
    with pytest.raises(RunError, match="does not exist"):
        image_datalist(tmp_path / "missing")
    with pytest.raises(RunError, match="no input"):
        image_datalist(None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="no images"):
        image_datalist(tmp_path / "empty")
    src = tmp_path / "in"
    src.mkdir()
    for name in ("b.png", "a.tif", ".a.x1y2.png", "notes.txt"):
        _tile(src / name) if name.endswith((".png", ".tif")) else (src / name).write_text("x")
    assert [d["image"] for d in image_datalist(src)] == [str(src / "a.tif"), str(src / "b.png")]
    assert image_datalist(src / "b.png") == [{"image": str(src / "b.png")}]
    assert image_datalist(src, default_dir=src) and "no --dataset_dir given" in capsys.readouterr().out
    # skip_existing leaves out a tile only when its whole output set is there
    out = tmp_path / "out"
    rgb = np.zeros((48, 48, 3), np.uint8)
    write_segmentation(out, "a", rgb, np.zeros((48, 48), np.int32))
    (out / "b_seg.png").write_bytes(b"")  # a stray file alone does not make b done
    assert [d["image"] for d in image_datalist(src, out, skip_existing=True)] == [str(src / "b.png")]
    assert len(image_datalist(src, out, skip_existing=False)) == 2
    # labels: found by stem; a missing one gets the path it should have, so that tile alone fails
    labels = tmp_path / "labels"
    labels.mkdir()
    _tile(labels / "a.png")
    items = image_datalist(src, labels_dir=labels)
    assert items[0]["label"] == str(labels / "a.png") and items[1]["label"] == str(labels / "b.png")


def test_readable_images(tmp_path, capsys):
    _tile(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_text("nope")
    kept = readable_images([{"image": str(tmp_path / "ok.png")}, {"image": str(tmp_path / "bad.png")}])
    assert kept == [{"image": str(tmp_path / "ok.png")}]
    assert "left out: " in capsys.readouterr().err
    with pytest.raises(RunError, match="none of the 1 images"):
        readable_images([{"image": str(tmp_path / "bad.png")}])


def test_user_error_finds_the_cause_below_monai_wrappers():
    try:
        try:
            raise InvalidImageError("x.png: greyscale image")
        except InvalidImageError as exc:
            raise RuntimeError("applying transform <LoadRGBd>") from exc
    except RuntimeError as outer:
        assert str(user_error(outer)) == "x.png: greyscale image"
    assert user_error(ValueError("a bug")) is None


def test_guarded_dataset_turns_a_failed_item_into_an_error_record(tmp_path):
    _tile(tmp_path / "ok.png")
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "grey.png")
    ds = GuardedDataset([{"image": str(tmp_path / "ok.png")}, {"image": str(tmp_path / "grey.png")}], LoadRGBd("image"))
    assert tuple(ds[0]["image"].shape) == (3, 48, 48) and ERROR_KEY not in ds[0]
    assert ds[1] == {
        "image": str(tmp_path / "grey.png"),
        ERROR_KEY: "greyscale image of shape (48, 48); an RGB H&E tile is required",
    }


class _FailOnDark(torch.nn.Module):
    """Stands in for a network that crashes on one input (as the sliding window did on 64 px tiles)."""

    def forward(self, x):
        if x.mean() < 0.2:
            raise RuntimeError("input too dark for this network")
        return torch.cat([1 - x[:, :1], x[:, :1]], dim=1)


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_fault_tolerant_evaluator_goes_on_after_failures(tmp_path, capsys, threads):
    from monai.data import DataLoader
    from monai.transforms import Compose, EnsureTyped, ScaleIntensityRanged

    from labelfree.engines.runs import TileProgress

    src = tmp_path / "in"
    src.mkdir()
    _tile(src / "a.png")
    _tile(src / "b_dark.png", value=10)
    (src / "c_broken.png").write_text("no")
    _tile(src / "d.png")
    _tile(src / "e_unwritable.png")
    written = []

    def save(d):
        name = os.path.basename(d["image"].meta["filename_or_obj"])
        if name.startswith("e_"):
            raise PermissionError("cannot write e_unwritable_seg.png")
        time.sleep(0.05)  # slower than the network: in the background, the next tile starts before this one is saved
        written.append(name)
        return {**d, "note": "a note"} if written[-1] == "d.png" else d

    pre = Compose(
        [LoadRGBd("image"), ScaleIntensityRanged("image", 0, 255, 0, 1), EnsureTyped("image", dtype=torch.float32)]
    )
    loader = DataLoader(GuardedDataset(image_datalist(src), pre), batch_size=1)
    ev = FaultTolerantEvaluator(
        device=torch.device("cpu"), val_data_loader=loader, network=_FailOnDark(), postprocessing=save,
        val_handlers=[TileProgress("t")], postprocessing_threads=threads,
    )  # fmt: skip
    ev.run()
    assert sorted(written) == ["a.png", "d.png"] and ev.n_written == 2  # in worker threads, d may finish before a
    assert [(os.path.basename(f), r) for f, r in ev.failures] == [
        ("b_dark.png", "RuntimeError: input too dark for this network"),
        ("c_broken.png", "cannot be read as an image (UnidentifiedImageError: cannot identify image file "
                         f"'{src / 'c_broken.png'}')"),
        ("e_unwritable.png", "cannot write e_unwritable_seg.png"),
    ]  # fmt: skip
    assert ev._pool is None  # the worker thread is gone once the run returns
    err = capsys.readouterr().err
    assert f"FAILED {src / 'b_dark.png'}: RuntimeError: input too dark" in err and "d.png: a note" in err
    assert "t [5/5] e_unwritable.png" in err  # one progress line per finished tile when there is no terminal
    with pytest.raises(SystemExit) as stop:
        finish_run(ev, tmp_path, "masks")
    assert stop.value.code == 1
    with open(tmp_path / FAILURES_FILE, newline="") as fh:
        assert [r["file"] for r in csv.DictReader(fh)] == [
            str(src / n) for n in ("b_dark.png", "c_broken.png", "e_unwritable.png")
        ]
    out = capsys.readouterr()
    assert "2 tile(s): masks written to" in out.out and "3 tile(s) failed" in out.err
    ev.failures.clear()
    assert finish_run(ev, tmp_path, "masks") == 0 and not (tmp_path / FAILURES_FILE).exists()  # stale report removed


def test_write_failures_is_atomic_csv(tmp_path):
    path = write_failures(tmp_path, [("x, y.png", 'reason with "quotes"')])
    with open(path, newline="") as fh:
        assert list(csv.DictReader(fh)) == [{"file": "x, y.png", "reason": 'reason with "quotes"'}]
    assert [p.name for p in tmp_path.iterdir()] == [FAILURES_FILE]


def test_excepthook_prints_user_errors_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    monkeypatch.delenv("LABELFREE_DEBUG", raising=False)
    install_error_handling(debug=False)
    try:
        raise RuntimeError("Failed to evaluate ConfigExpression") from RunError("--dataset_dir x does not exist")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: --dataset_dir x does not exist",
        "(for the traceback, run again with --debug True or LABELFREE_DEBUG=1)",
    ]
    try:
        raise ValueError("a bug in our code")
    except ValueError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    assert "Traceback" in capsys.readouterr().err  # bugs keep their traceback


def test_sigterm_removes_temporaries(tmp_path):
    """SIGTERM while a file is being written: the process exits with 143 and leaves neither output nor temporary."""
    script = textwrap.dedent(f"""
        import os, signal
        from labelfree.core.imageio import atomic_paths
        from labelfree.engines.runs import install_signal_cleanup
        install_signal_cleanup()
        with atomic_paths([r"{tmp_path / 'a.png'}", r"{tmp_path / 'b.tif'}"]) as (a, b):
            a.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
            b.write_bytes(b"never")
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 143, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_save_trained_weights_writes_a_bare_state_dict_and_the_optimizer(tmp_path, capsys):
    from ignite.engine import Engine

    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    engine = Engine(lambda e, b: None)
    SaveTrainedWeights(str(tmp_path / "run" / "model.pt"), torch.nn.DataParallel(net), opt).attach(engine)
    engine.run([0], max_epochs=1)
    sd = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert set(sd) == {"weight", "bias"}  # unwrapped, no "module." and no {"model": ...} wrapper
    assert optimizer_path(tmp_path / "run" / "model.pt") == tmp_path / "run" / "model.optimizer.pth"
    assert set(torch.load(tmp_path / "run" / "model.optimizer.pth", weights_only=True)) == {"state", "param_groups"}
    assert "trained weights written to" in capsys.readouterr().out


def test_save_trained_weights_gives_the_same_bytes_for_the_same_weights(tmp_path):
    """The file is written through a randomly named temporary; its bytes must not depend on that name."""
    from ignite.engine import Engine

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    paths = [tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt"]
    for path in paths:
        engine = Engine(lambda e, b: None)
        SaveTrainedWeights(str(path), net).attach(engine)
        engine.run([0], max_epochs=1)
    assert paths[0].read_bytes() == paths[1].read_bytes()
