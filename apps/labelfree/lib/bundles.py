"""Where the app's bundles live: copies of the repository's ``bundles/<name>``, made on first start.

MONAI Label trains into the bundle it serves (``models/model.pt``); serving the repository folders directly would
let a training request overwrite the shipped checkpoints. The copy is refreshed when the repository's bundle
version changes; the previous copy is kept beside it as ``<name>.v<old version>``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["prepare_bundles", "bundle_version"]

_IGNORE = shutil.ignore_patterns("eval", "__pycache__", "*.pyc", "model.ts", "train_studies")


def bundle_version(bundle_dir: Path) -> str:
    return json.loads((bundle_dir / "configs" / "metadata.json").read_text())["version"]


def prepare_bundles(source_dir: Path, model_dir: Path, names: list[str]) -> dict[str, Path]:
    """Copy each named bundle from ``source_dir`` into ``model_dir`` unless an up-to-date copy is there.

    Returns:
        ``{name: bundle folder to serve}`` in the order given.

    Raises:
        ValueError: a name is not a bundle of ``source_dir`` (the message lists the available ones).
    """
    available = sorted(p.name for p in source_dir.iterdir() if (p / "configs" / "metadata.json").is_file())
    out: dict[str, Path] = {}
    for name in names:
        src = source_dir / name
        if name not in available:
            raise ValueError(f"unknown bundle '{name}' (--conf models): available bundles are {', '.join(available)}")
        dst = model_dir / name
        version = bundle_version(src)
        if dst.exists():
            try:
                current = bundle_version(dst)
            except (OSError, ValueError, KeyError):
                current = "unknown"
            if current == version:
                out[name] = dst
                continue
            old = model_dir / f"{name}.v{current}"
            shutil.rmtree(old, ignore_errors=True)
            dst.rename(old)
            log.info("bundle %s: version %s replaced by %s (old copy kept in %s)", name, current, version, old)
        tmp = model_dir / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, ignore=_IGNORE)
        tmp.rename(dst)  # a crash mid-copy never leaves a half bundle under the served name
        log.info("bundle %s %s copied from %s to %s", name, version, src, dst)
        out[name] = dst
    return out
