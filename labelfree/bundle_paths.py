"""A bundle's own folder: checking ``bundle_root`` (``"."`` in the configs, as in the model zoo; ``--bundle_root`` from
anywhere else), and the parameters its training and inference configs share."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["check_bundle_root", "shared_parameters", "locate_bundle", "SHARED_CONFIG"]

#: the file, in a bundle's ``configs/``, with the parameters its training and inference configs share
SHARED_CONFIG = "common.json"


def check_bundle_root(root: str | os.PathLike) -> str:
    """Fail early, in one line, when ``bundle_root`` is not a bundle folder.

    As in the model zoo, the configs say ``"bundle_root": "."``: run them from the bundle's folder, or pass
    ``--bundle_root PATH`` (MONAI Label and the zoo's CI do).

    Returns:
        the root as a string.

    Raises:
        labelfree.engines.runs.RunError: ``root`` has no ``configs/metadata.json``.
    """
    from labelfree.engines.runs import RunError

    if not (Path(root) / "configs" / "metadata.json").is_file():
        raise RunError(
            f"bundle_root {os.path.abspath(root)} is not a bundle folder (no configs/metadata.json): run from the "
            "bundle's folder or pass --bundle_root PATH, e.g. --bundle_root bundles/ssimnet"
        )
    return str(root)


def shared_parameters(root: str | Path) -> dict:
    """The parameters a bundle's ``train.json`` and ``inference.json`` must agree on, from ``configs/common.json``.

    Both configs read them from here (``"n_clusters": "$@shared['n_clusters']"``), so each is declared once; keys
    starting with ``_`` are comments.

    Raises:
        FileNotFoundError: the bundle has no ``configs/common.json``.
    """
    import json

    path = Path(root) / "configs" / SHARED_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the bundle's shared training/inference parameters live there")
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


def locate_bundle(root: str | os.PathLike, name: str) -> str:
    """The folder of bundle ``name`` (``ssimnet``, ``dcgn``), for configs that must run from anywhere.

    ``root`` when it is a bundle folder (``--bundle_root``, or run from the bundle's folder as in the model zoo); else
    the bundle folder MONAI put on ``sys.path`` for the config being run (``python -m monai.bundle run --config_file
    bundles/NAME/configs/...`` adds it), else ``bundles/NAME`` of this repository.

    Raises:
        labelfree.engines.runs.RunError: none of them exists.
    """
    import sys

    candidates = [Path(root)] + [Path(p) for p in sys.path if p and Path(p).name == name]
    candidates.append(Path(__file__).resolve().parents[1] / "bundles" / name)
    for cand in candidates:
        if (cand / "configs" / "metadata.json").is_file() and (cand == Path(root) or cand.name == name):
            return str(cand)
    return check_bundle_root(root)
