"""Locating a bundle's root folder, so ``python -m monai.bundle run --config_file .../configs/x.json`` works from any
current directory. Tools that pass ``--bundle_root`` (MONAI Label, the model-zoo CI) override it as usual."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

__all__ = ["bundle_root", "shared_parameters", "SHARED_CONFIG"]

#: the file, in a bundle's ``configs/``, with the parameters its training and inference configs share
SHARED_CONFIG = "common.json"


def bundle_root(default: str = ".", argv: list[str] | None = None) -> str:
    """The folder above ``configs/`` of the first ``--config_file`` on the command line, else ``default``.

    Accepts ``--config_file PATH``, ``--config_file=PATH`` and MONAI's list form ``"['a.json', 'b.json']"``.
    """
    args = sys.argv if argv is None else argv
    value = None
    for i, a in enumerate(args):
        if a == "--config_file" and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith("--config_file="):
            value = a.split("=", 1)[1]
        if value is not None:
            break
    if value is None:
        return default
    if value.strip().startswith("["):
        try:
            value = ast.literal_eval(value)[0]
        except (ValueError, SyntaxError, IndexError):
            return default
    cfg = Path(value).resolve()
    return str(cfg.parent.parent if cfg.parent.name == "configs" else cfg.parent)


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
