"""Helpers to run a bundle config through ``python -m monai.bundle run`` in a subprocess, as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from synthetic import synthetic_tile

REPO = Path(__file__).resolve().parents[1]


def bundle_config(bundle: str, *names: str) -> str:
    paths = [str(REPO / "bundles" / bundle / "configs" / f"{n}.json") for n in names]
    return paths[0] if len(paths) == 1 else "[" + ",".join(repr(p) for p in paths) + "]"


def run_bundle(
    bundle: str, configs: tuple[str, ...], cwd: Path, timeout: int = 600, **overrides
) -> subprocess.CompletedProcess:
    """Run ``monai.bundle run`` with the given config files and ``--key value`` overrides from ``cwd``, with
    ``--bundle_root`` pointing at the bundle (its configs say ``"."``, as in the model zoo)."""
    overrides.setdefault("bundle_root", REPO / "bundles" / bundle)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", bundle_config(bundle, *configs)]
    for k, v in overrides.items():
        cmd += [f"--{k}", str(v)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def write_synthetic_dataset(folder: Path, n: int = 3, size: int = 256, seed: int = 0) -> tuple[Path, Path]:
    """``n`` synthetic tiles in ``folder/images`` and their instance maps in ``folder/labels``."""
    img_dir, lab_dir = folder / "images", folder / "labels"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir(parents=True)
    for i in range(n):
        t = synthetic_tile(size, n_nuclei=45, touching_pairs=5, seed=seed + i)
        Image.fromarray(t.image).save(img_dir / f"tile{i}.png")
        Image.fromarray(t.instances.astype(np.uint16)).save(lab_dir / f"tile{i}.png")
    return img_dir, lab_dir


def forget_bundle_scripts() -> None:
    """Drop any imported ``scripts`` package: every bundle names its code package ``scripts`` (the model-zoo
    convention), so the next bundle's must be imported afresh, as MONAI Label does between bundles."""
    for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
        del sys.modules[name]


def import_bundle_module(bundle: str, module: str):
    """Import ``scripts.<module>`` of one bundle (after :func:`forget_bundle_scripts`)."""
    import importlib

    forget_bundle_scripts()
    path = str(REPO / "bundles" / bundle)
    sys.path.insert(0, path)
    try:
        return importlib.import_module(f"scripts.{module}")
    finally:
        sys.path.remove(path)


def run_bundle_ok(bundle: str, configs: tuple[str, ...], cwd: Path, **overrides) -> subprocess.CompletedProcess:
    """:func:`run_bundle`, failing the test with the end of the log when the run fails."""
    proc = run_bundle(bundle, configs, cwd, **overrides)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def run_inference_ok(
    bundle: str, trained: dict, cwd: Path, out: Path, configs: tuple[str, ...] = ("inference",), **overrides
) -> subprocess.CompletedProcess:
    """A bundle's ``inference.json`` (with any overlay ``configs``) on a test fixture's images with its trained model
    (``trained["images"]``, ``trained["model"]``), writing to ``out``; it must succeed."""
    return run_bundle_ok(
        bundle,
        configs,
        cwd,
        dataset_dir=trained["images"],
        output_dir=out,
        ckpt_path=trained["model"],
        **overrides,
    )
