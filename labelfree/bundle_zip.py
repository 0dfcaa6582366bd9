"""Self-contained model-zoo zips of the bundles.

A bundle's configs import ``labelfree`` (transforms, readers, writers). The zip therefore carries the package next to
``configs/`` so that, unpacked anywhere, ``python -m monai.bundle run --config_file configs/inference.json`` run from
the bundle folder (the zoo's convention) needs only the packages listed in ``configs/metadata.json``. The benchmark
harness and the test fixtures live outside the package, so they never reach a zip.

Entries get a fixed timestamp and a sorted order, as the zoo's release job does, so the same tree gives the same
bytes and the same hash.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import labelfree
import labelfree.core
import labelfree.transforms
from labelfree.core.imageio import atomic_path

__all__ = ["bundle_files", "build_bundle_zip", "required_packages"]

#: the DOS epoch: zip timestamps cannot be earlier, and a fixed one makes builds byte-identical
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
#: bundle parts a user needs, besides the weights ``large_files.yml`` lists; ``eval/`` (outputs), training checkpoints
#: and exported TorchScript are left out
_BUNDLE_PARTS = ("configs", "docs", "scripts", "LICENSE", "large_files.yml")
_SKIP_PARTS = {"__pycache__"}


def _walk(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if p.is_file() and not _SKIP_PARTS.intersection(rel) and p.suffix not in (".pyc", ".pyo"):
            yield p


def _large_files(bundle_dir: Path) -> list[str]:
    """The weight files ``large_files.yml`` declares (``models/model.pt`` when there is no such file): the zip must
    hold every one, or the zoo's ``download_large_files`` step would look for a release that does not exist."""
    listing = bundle_dir / "large_files.yml"
    if not listing.is_file():
        return ["models/model.pt"]
    from monai.bundle import ConfigParser

    return [str(entry["path"]) for entry in ConfigParser.load_config_file(str(listing))["large_files"]]


def bundle_files(bundle_dir: str | Path) -> list[tuple[Path, str]]:
    """``(source file, name inside the zip)`` pairs for a bundle, sorted by name.

    Names start with the bundle folder's name; the package goes to ``<bundle>/labelfree/`` with ``transforms`` as
    its subpackage, the layout it has when installed.

    Raises:
        FileNotFoundError: ``bundle_dir`` has no ``configs/metadata.json`` or no ``models/model.pt``.
    """
    bundle_dir = Path(bundle_dir).resolve()
    for required in ("configs/metadata.json", "models/model.pt"):
        if not (bundle_dir / required).is_file():
            raise FileNotFoundError(f"{bundle_dir} is not a complete bundle: {required} is missing")
    name = bundle_dir.name
    pairs: list[tuple[Path, str]] = []
    for part in (*_BUNDLE_PARTS, *_large_files(bundle_dir)):
        src = bundle_dir / part
        if src.exists():
            pairs += [(p, f"{name}/{p.relative_to(bundle_dir).as_posix()}") for p in _walk(src)]
    # each package by its own location: core/ and transforms/ may sit outside labelfree/ (the repository's layout,
    # mapped by setup.cfg) or inside it (a regular install); in the zip they are subpackages, as when installed
    for package in (labelfree, labelfree.core, labelfree.transforms):
        folder = Path(package.__file__).resolve().parent
        prefix = package.__name__.replace(".", "/")
        pairs += [(p, f"{name}/{prefix}/{p.relative_to(folder).as_posix()}") for p in _walk(folder)]
    return sorted(set(pairs), key=lambda x: x[1])


def required_packages(bundle_dir: str | Path) -> list[str]:
    """The pip requirements ``configs/metadata.json`` lists: monai, torch, numpy and the package dicts, ``==``-pinned.

    The same list the zoo's ``ci/get_bundle_requirements.py`` derives.
    """
    meta = json.loads((Path(bundle_dir) / "configs" / "metadata.json").read_text())
    reqs = {"monai": meta["monai_version"], "torch": meta["pytorch_version"], "numpy": meta["numpy_version"]}
    for key in ("required_packages_version", "optional_packages_version"):
        reqs.update(meta.get(key) or {})
    return [f"{pkg}=={ver}" for pkg, ver in sorted(reqs.items())]


def build_bundle_zip(bundle_dir: str | Path, out_dir: str | Path = "dist") -> Path:
    """Write ``<out_dir>/<bundle>_v<version>.zip`` atomically and return its path.

    Args:
        bundle_dir: a bundle folder (``bundles/ssimnet``, ``bundles/dcgn``).
        out_dir: where the zip goes; created if missing.
    """
    bundle_dir = Path(bundle_dir).resolve()
    files = bundle_files(bundle_dir)
    version = json.loads((bundle_dir / "configs" / "metadata.json").read_text())["version"]
    dest = Path(out_dir) / f"{bundle_dir.name}_v{version}.zip"
    with atomic_path(dest) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for src, arcname in files:
                info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, src.read_bytes())
    return dest
