"""Self-contained bundle zips: contents, reproducible bytes, and inference from a fresh virtual environment.

The fresh-environment test is the model zoo's own check done locally: install only what ``metadata.json`` lists,
unpack the zip somewhere else, and run ``configs/inference.json`` from the bundle folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from labelfree.bundle_zip import build_bundle_zip, bundle_files, required_packages
from labelfree.sample import sample_pairs

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ("ssimnet", "dcgn")


@pytest.mark.parametrize("bundle", BUNDLES)
def test_zip_carries_bundle_and_package_only(bundle, tmp_path):
    copy = tmp_path / bundle
    shutil.copytree(REPO / "bundles" / bundle, copy)
    (copy / "eval").mkdir(exist_ok=True)  # outputs a user left behind must stay out of the zip
    names = {n for _, n in bundle_files(copy)}
    for required in (
        "configs/metadata.json",
        "configs/inference.json",
        "models/model.pt",
        "LICENSE",
        "large_files.yml",
        "scripts/__init__.py",
        "docs/README.md",
        "labelfree/__init__.py",
        "labelfree/transforms/io.py",
        "labelfree/sample/ATTRIBUTION.md",
    ):
        assert f"{bundle}/{required}" in names
    assert not [n for n in names if "/eval/" in n or "__pycache__" in n or n.endswith(".ts")]
    # neither the benchmark harness nor the test fixtures ship with a bundle
    assert not [n for n in names if "bench" in n.split("/") or "harness" in n or "synthetic" in n or "baselines" in n]
    if bundle == "ssimnet":  # every weight file large_files.yml lists is in the zip
        assert f"{bundle}/models/model.optimizer.pth" in names


def test_zip_is_byte_reproducible(tmp_path):
    a = build_bundle_zip(REPO / "bundles" / "dcgn", tmp_path / "a")
    b = build_bundle_zip(REPO / "bundles" / "dcgn", tmp_path / "b")
    assert a.name == b.name and a.name.startswith("dcgn_v")
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    assert not [p for p in a.parent.iterdir() if p != a]  # nothing half-written left beside it


def test_incomplete_bundle_is_refused(tmp_path):
    shutil.copytree(REPO / "bundles" / "dcgn" / "configs", tmp_path / "broken" / "configs")
    with pytest.raises(FileNotFoundError, match="models/model.pt"):
        build_bundle_zip(tmp_path / "broken", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_requirements_come_from_metadata():
    reqs = required_packages(REPO / "bundles" / "ssimnet")
    assert "torch==2.13.0" in reqs and "monai==1.6.1" in reqs
    assert all("==" in r for r in reqs)


_VENVS: dict[tuple[str, ...], Path] = {}


def _fresh_venv(reqs: list[str], root: Path) -> Path:
    """A virtual environment with exactly ``reqs`` (one per distinct list, reused within the session)."""
    key = tuple(reqs)
    if key not in _VENVS:
        venv = root / f"venv{len(_VENVS)}"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        py = venv / "bin" / "python"
        # torch first, from the pinned CPU build, so nothing pulls a CUDA build
        pip = [str(py), "-m", "pip", "install", "--quiet", "-c", str(REPO / "constraints.txt")]
        subprocess.run(pip + [r for r in reqs if r.startswith("torch==")], check=True)
        subprocess.run(pip + reqs, check=True)
        _VENVS[key] = venv
    return _VENVS[key]


@pytest.fixture(scope="module")
def venv_root(tmp_path_factory):
    return tmp_path_factory.mktemp("venvs")


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES)
def test_zip_runs_inference_in_fresh_venv(bundle, venv_root, tmp_path):
    zpath = build_bundle_zip(REPO / "bundles" / bundle, tmp_path / "dist")
    reqs = required_packages(REPO / "bundles" / bundle)
    py = _fresh_venv(reqs, venv_root) / "bin" / "python"
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True).stdout
    assert "labelfree" not in listed.lower()  # the package must come from the zip

    unpacked = tmp_path / "elsewhere"
    with zipfile.ZipFile(zpath) as zf:
        zf.extractall(unpacked)
    bundle_dir = unpacked / bundle
    image, _ = sample_pairs()[0]
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(image, data / image.name)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [
            str(py),
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            "configs/inference.json",
            "--dataset_dir",
            str(data),
            "--output_dir",
            str(out),
        ],
        cwd=bundle_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    inst = tifffile.imread(out / f"{image.stem}_inst.tif")
    assert inst.shape == (512, 512) and inst.max() > 10
    assert (out / f"{image.stem}_seg.png").is_file() and (out / f"{image.stem}_overlay.png").is_file()
    assert np.unique(inst).size > 10
