"""MONAI Label app serving this repository's label-free bundles (DCGN, SSimNet); nothing is downloaded.

    monailabel start_server --app apps/labelfree --studies DIR --conf models dcgn,ssimnet --host 127.0.0.1 --port 8000

``--conf`` settings:
    models          comma-separated bundle names from ``bundles/`` (default ``dcgn,ssimnet``)
    bundles_dir     where the bundles come from (default: the repository's ``bundles/``)
    model_dir       where the served copies live (default ``<app>/model``; see ``lib/bundles.py``)
    skip_trainers   ``true`` to serve inference only
    preload         ``true`` to load the networks at start-up
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.utils.others.generic import strtobool

import labelfree
from lib.bundles import prepare_bundles
from lib.infer import NucleiInferTask
from lib.train import LabelFreeTrainTask

log = logging.getLogger(__name__)

REPO_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


class LabelFreeApp(MONAILabelApp):
    """One nuclei infer task and one label-free train task per bundle."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        names = [n.strip() for n in conf.get("models", "dcgn,ssimnet").split(",") if n.strip()]
        source = Path(conf.get("bundles_dir", REPO_BUNDLES))
        model_dir = Path(conf.get("model_dir", os.path.join(app_dir, "model")))
        model_dir.mkdir(parents=True, exist_ok=True)
        self.bundles = prepare_bundles(source, model_dir, names)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="labelfree",
            description="Label-free nuclei segmentation of H&E tiles: DCGN and SSimNet bundles, trained without labels",
            version=getattr(labelfree, "__version__", "0.1.0"),
            labels={"Nuclei": 1},
        )

    def init_infers(self) -> dict[str, InferTask]:
        tasks = {name: NucleiInferTask(str(path), self.conf) for name, path in self.bundles.items()}
        broken = [n for n, t in tasks.items() if not t.is_valid()]
        if broken:
            raise RuntimeError(f"bundle(s) {', '.join(broken)} could not be served (see the warnings above)")
        return tasks

    def init_trainers(self) -> dict[str, TrainTask]:
        if strtobool(self.conf.get("skip_trainers", "false")):
            return {}
        return {name: LabelFreeTrainTask(str(path), self.conf) for name, path in self.bundles.items()}

    def infer_wsi(self, request: dict[str, Any], datastore=None) -> dict[str, Any]:
        if not torch.cuda.is_available():
            # MONAI Label spreads slide tiles over the GPUs it finds and fails when there are none
            request = {**request, "multi_gpu": False, "device": "cpu"}
        if "tile_margin" not in request and _several_tiles(request):
            # MONAI Label cuts the slide into tiles without overlap: read each with context and keep a nucleus only
            # in the tile whose core holds its centroid, so nuclei on the seams are neither cut nor doubled
            request = {**request, "tile_margin": TILE_MARGIN}
        return super().infer_wsi(request, datastore)


#: context read around each of MONAI Label's slide tiles, in pixels of the level read (32 µm at 40x)
TILE_MARGIN = 128


def _several_tiles(request: dict[str, Any]) -> bool:
    """Whether MONAI Label will cut this request into more than one tile (a whole slide, or a region larger than
    its ``tile_size``)."""
    size = request.get("size") or [0, 0]
    tile = request.get("tile_size") or [2048, 2048]
    if not any(size):
        return True
    return any(int(s) > int(t) for s, t in zip(size, tile))
