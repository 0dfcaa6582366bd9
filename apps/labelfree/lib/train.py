"""Label-free training from the studies: every image of the datastore, no labels, no validation split."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from monai.handlers import CheckpointLoader
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.bundle import BundleTrainTask

from lib.transforms import image_side

log = logging.getLogger(__name__)

__all__ = ["LabelFreeTrainTask", "MAX_TRAIN_SIDE"]

#: training reads whole images; anything larger (a whole slide) is left out of the training set with a warning
MAX_TRAIN_SIDE = 8192


class LabelFreeTrainTask(BundleTrainTask):
    """MONAI Label's bundle train task, reading unlabelled studies.

    The stock task trains only on images that have a final label and hands them over as ``train#dataset#data``.
    Our bundles need neither: DCGN fits its mixture to the images themselves and SSimNet builds pseudo labels from
    a folder of images. So the datastore's images are linked into ``<bundle>/train_studies/`` and passed as
    ``dataset_dir``; no validation split is made (choosing a checkpoint by labels is what the project never does).
    With ``pretrained`` (the default) training starts from the served ``models/<model_filename>``; the result
    replaces it when training ends.
    """

    def __init__(self, path: str, conf: dict[str, str], **kwargs: Any) -> None:
        super().__init__(path, conf, **kwargs)
        self._pretrained: str | None = None

    def config(self) -> dict[str, Any]:
        c = super().config()
        c["val_split"] = 0.0
        c["max_epochs"] = int(self.bundle_config.get("max_epochs", c["max_epochs"]))
        c["multi_gpu"] = False
        return c

    def _fetch_datalist(self, request: dict[str, Any], datastore: Datastore) -> list[dict[str, str]]:
        images, skipped = [], []
        for i in datastore.list_images():
            uri = datastore.get_image_uri(i)
            side = image_side(uri)
            (images if side is not None and side <= MAX_TRAIN_SIDE else skipped).append(uri)
        if skipped:
            log.warning(
                "left out of training (unreadable, or larger than %d px: export tiles from slides to train on them): %s",
                MAX_TRAIN_SIDE,
                ", ".join(Path(p).name for p in skipped),
            )
        if not images:
            raise ValueError("the studies folder holds no image tile to train on")
        return [{"image": uri} for uri in images]

    def _partition_datalist(self, datalist, request, shuffle=False):
        return datalist, None

    def _load_checkpoint(self, model_pytorch: str, pretrained: bool, train_handlers) -> None:
        # The bundles build train#handlers in an expression, so the loader is added to train#base_handlers instead.
        self._pretrained = model_pytorch if pretrained and os.path.exists(model_pytorch) else None

    def _update_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        images = overrides.pop(self.const.key_train_dataset_data())
        overrides.pop(self.const.key_train_handlers(), None)
        overrides.pop(self.const.key_validate_dataset_data(), None)
        overrides["dataset_dir"] = str(self._link_studies([d["image"] for d in images]))
        overrides["max_epochs"] = overrides[self.const.key_train_trainer_max_epochs()]
        overrides["resume"] = False  # a request starts a new run; stale epoch checkpoints must not be resumed
        # the bundles' own train.json writes to a run folder and never over models/; the server's copy is the one
        # place where replacing the served weights is the point of training
        overrides["model_path"] = os.path.join(self.bundle_path, "models", "model.pt")
        if self._pretrained:
            handlers = list(self.bundle_config.get("train#base_handlers"))
            handlers.insert(
                0,
                {
                    "_target_": CheckpointLoader.__name__,
                    "load_path": self._pretrained,
                    "load_dict": {self.model_dict_key: f"@{self.const.key_network()}"},
                    "strict": True,
                    "map_location": "cpu",
                },
            )
            overrides["train#base_handlers"] = handlers
        log.info("label-free training on %d images from %s", len(images), overrides["dataset_dir"])
        return overrides

    def _link_studies(self, images: list[str]) -> Path:
        folder = Path(self.bundle_path) / "train_studies"
        folder.mkdir(exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for i, image in enumerate(sorted(images)):
            src = Path(image).resolve()
            (folder / f"{i:05d}_{src.name}").symlink_to(src)
        return folder
