"""Locating a bundle's root folder, so ``python -m monai.bundle run --config_file .../configs/x.json`` works from any
current directory. Tools that pass ``--bundle_root`` (MONAI Label, the model-zoo CI) override it as usual."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

__all__ = ["bundle_root"]


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
