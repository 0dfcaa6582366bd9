"""Lets ``import torchvision`` succeed where torchvision's compiled ops cannot load (the CPU build of torch).

monailabel imports ``torchvision.utils`` (``make_grid``, ``save_image``: plain Python) when it loads its post
transforms, so the MONAI Label server cannot start without torchvision. PyPI only has torchvision wheels linked
against CUDA torch; with the CPU build of torch their ``_C`` library fails to load, and torchvision 0.28 then fails
at import because it registers fake kernels for ``torchvision::nms`` and ``torchvision::qnms`` without checking that
the ops exist. Installed with a ``.pth`` file into the MONAI Label environment (``make label-env``), this module
waits for the first ``import torchvision``; if the compiled ops really cannot load, it declares those two schemas
so the import goes through. ``torchvision.ops.nms`` still raises if called; nothing in our app calls it. Where the
ops load (a matching torchvision), it does nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


def _declare_missing_ops() -> None:
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    for location in spec.submodule_search_locations:
        for lib in Path(location).glob("_C*.so"):
            try:
                torch.ops.load_library(str(lib))
                return  # the real ops are there
            except (OSError, RuntimeError):
                pass
    for op in ("nms", "qnms"):
        try:
            torch.library.define(f"torchvision::{op}", _SCHEMA)
        except RuntimeError:  # already declared
            pass


class _OnFirstImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # noqa: D102 - importlib protocol
        if fullname == "torchvision":
            sys.meta_path.remove(self)
            _declare_missing_ops()
        return None  # the usual finders import the package


if not any(isinstance(f, _OnFirstImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _OnFirstImport())
