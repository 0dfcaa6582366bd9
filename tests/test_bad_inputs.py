"""The bad-input matrix: the pseudo-label CLI and both bundles over one folder of good and bad tiles.

Each tool must write both good tiles correctly, write the tiles it can (64 px; black and blank as empty masks with a
note), report every bad tile in one line (stderr and ``failures.csv``), leave no partial or hidden file, and exit
with status 1 because something failed.
"""

import csv
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from bundle_runner import run_bundle
from labelfree.core.imageio import find_label, load_instance_map, load_rgb
from labelfree.core.metrics import pixel_scores
from labelfree.sample import sample_dir

GOOD = ("a_good", "z_good")
#: bad tile → words its one-line reason must contain
FAILS = {
    "b_grey.png": "greyscale",
    "c_transparent.png": "transparent",
    "d_nan.tif": "NaN",
    "e_20px.png": "too small",
    "i_truncated.png": "truncated",
    "j_empty.png": "empty file",
    "k_text.png": "cannot be read as an image",
}
#: tiles that are valid and must be written; black and blank give an empty mask and a note
WRITTEN_EMPTY = ("g_black", "h_blank")
WRITTEN = (*GOOD, "f_64px", *WRITTEN_EMPTY)
#: the lowest Dice against the sample's labels each tool must reach on the two good tiles (measured on them: pseudo
#: labels 0.72 / 0.74, SSimNet 0.78 / 0.78, DCGN 0.49 / 0.27); well below means a wrong tile or a broken mask
MIN_DICE = {"cli": 0.6, "ssimnet": 0.6, "dcgn": 0.2}


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_inputs") / "in"
    folder.mkdir()
    tiles = sorted((sample_dir() / "images").glob("*.png"))[:2]
    for stem, src in zip(GOOD, tiles):
        (folder / f"{stem}.png").write_bytes(src.read_bytes())
    rgb = load_rgb(tiles[0])
    Image.fromarray(rgb[..., 0]).save(folder / "b_grey.png")
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    rgba[:8, :8, 3] = 0
    Image.fromarray(rgba).save(folder / "c_transparent.png")
    nan = rgb.astype(np.float32) / 255.0
    nan[5, 5, 1] = np.nan
    tifffile.imwrite(folder / "d_nan.tif", nan, photometric="rgb")
    Image.fromarray(rgb[:20, :20]).save(folder / "e_20px.png")
    Image.fromarray(rgb[100:164, 100:164]).save(folder / "f_64px.png")
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(folder / "g_black.png")
    noise = np.random.default_rng(0).normal(scale=2, size=(256, 256, 3))
    Image.fromarray(np.clip(246 + noise, 0, 255).astype(np.uint8)).save(folder / "h_blank.png")
    data = tiles[0].read_bytes()
    (folder / "i_truncated.png").write_bytes(data[: len(data) // 3])
    (folder / "j_empty.png").write_bytes(b"")
    (folder / "k_text.png").write_text("this is not an image\n")
    (folder / ".a_good.tmp123.png").write_bytes(data)  # what an interrupted writer leaves: never an input
    return {"folder": folder, "sources": dict(zip(GOOD, tiles))}


def _check_outputs(tool, out, proc, sources):
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    names = sorted(p.name for p in out.iterdir())
    expected = [f"{s}_{k}" for s in WRITTEN for k in ("inst.tif", "overlay.png", "seg.png")]
    assert names == sorted([*expected, "failures.csv"])  # no partial set, no hidden temporary, no output for '.a_good'
    with open(out / "failures.csv", newline="") as fh:
        rows = {r["file"].rsplit("/", 1)[-1]: r["reason"] for r in csv.DictReader(fh)}
    assert set(rows) == set(FAILS)
    for name, words in FAILS.items():
        assert words in rows[name], (name, rows[name])
        lines = [line for line in proc.stderr.splitlines() if line.startswith("FAILED") and name in line]
        assert len(lines) == 1 and words in lines[0], (name, lines)
    for stem in WRITTEN_EMPTY:
        assert tifffile.imread(out / f"{stem}_inst.tif").max() == 0
        assert f"{stem}.png" in proc.stdout + proc.stderr and "no H&E tissue" in proc.stdout + proc.stderr
    assert tifffile.imread(out / "f_64px_inst.tif").shape == (64, 64)
    for stem, src in sources.items():
        inst = tifffile.imread(out / f"{stem}_inst.tif")
        gt = load_instance_map(find_label(sample_dir() / "labels", src))
        assert inst.dtype == np.uint16 and inst.shape == gt.shape and inst.max() > 20
        assert pixel_scores(gt > 0, inst > 0)["dice"] > MIN_DICE[tool]
        seg = np.asarray(Image.open(out / f"{stem}_seg.png"))
        assert seg.dtype == np.uint8 and seg.shape == gt.shape
        if tool == "dcgn":  # the class map: its nuclei class holds the instances (up to the holes they fill)
            assert (seg[inst > 0] > 0).mean() > 0.95
        else:  # the mask of the instances
            assert np.array_equal(seg > 0, inst > 0)
        assert np.asarray(Image.open(out / f"{stem}_overlay.png")).shape == (*gt.shape, 3)


def test_cli_matrix(bad_folder, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "labelfree", "pseudo_labels", "--input", str(bad_folder["folder"]), "--output"]
    proc = subprocess.run([*cmd, str(out)], capture_output=True, text=True, timeout=600)
    _check_outputs("cli", out, proc, bad_folder["sources"])
    # resuming: the written tiles are skipped, only the failed ones are tried again
    again = subprocess.run([*cmd, str(out), "--skip_existing"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 1 and f"{len(WRITTEN)} of {len(WRITTEN) + len(FAILS)} tiles already done" in again.stdout
    assert "a_good.png:" not in again.stdout


@pytest.mark.parametrize("bundle", ["ssimnet", "dcgn"])
def test_bundle_matrix(bundle, bad_folder, tmp_path):
    out = tmp_path / "out"
    extra = {"finetune": False} if bundle == "ssimnet" else {}
    proc = run_bundle(bundle, ("inference",), cwd=tmp_path, dataset_dir=bad_folder["folder"], output_dir=out, **extra)
    _check_outputs(bundle, out, proc, bad_folder["sources"])
    assert f"{len(FAILS)} tile(s) failed" in proc.stderr


def test_stain_reference_cli_skips_bad_tiles_in_one_line_each(bad_folder, tmp_path):
    import json

    cmd = [sys.executable, "-m", "labelfree", "stain_reference", str(bad_folder["folder"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    ref = json.loads(proc.stdout.strip().splitlines()[-1])
    assert np.asarray(ref["stains"]).shape == (2, 3) and len(ref["max_concentrations"]) == 2
    for name in FAILS:
        assert len([line for line in proc.stderr.splitlines() if "skipped" in line and name in line]) == 1, name
    missing = subprocess.run([*cmd[:-1], str(tmp_path / "nope")], capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("error: image directory not found")


def test_object_area_reference_cli_skips_bad_tiles_in_one_line_each(bad_folder, tmp_path):
    cmd = [sys.executable, "-m", "labelfree", "object_area_reference", str(bad_folder["folder"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert int(proc.stdout.strip().splitlines()[-1]) > 0
    for name in FAILS:
        assert len([line for line in proc.stderr.splitlines() if "skipped" in line and name in line]) == 1, name
    missing = subprocess.run([*cmd[:-1], str(tmp_path / "nope")], capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("error: image directory not found")
