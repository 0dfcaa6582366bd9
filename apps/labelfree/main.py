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
        return super().infer_wsi(request, datastore)
