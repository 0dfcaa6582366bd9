"""Nuclei inference through a bundle's own inference.json, returning contours for QuPath, ASAP and DSA."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.transform.writer import PolygonWriter

from labelfree.engines.slides import bundle_window
from labelfree.transforms.io import LoadRGBd, SaveSegmentationd
from lib.transforms import InstanceContoursd, LoadTiled

log = logging.getLogger(__name__)

__all__ = ["NucleiInferTask"]


class NucleiInferTask(BundleInferTask):
    """A bundle's preprocessing, inferer (SSimNet's includes test-time fine-tuning) and postprocessing, with the
    file reader and writer swapped for MONAI Label's: the tile or slide region comes from the request, and the
    instance map goes out as one polygon per nucleus (``?output=asap`` XML, ``dsa`` JSON or ``json``).

    Args:
        path: the bundle folder.
        conf: the app's ``--conf`` settings.
    """

    def __init__(self, path: str, conf: dict[str, str], **kwargs: Any) -> None:
        super().__init__(
            path,
            conf,
            type=InferType.SEGMENTATION,
            pre_filter=[LoadRGBd],
            post_filter=[SaveSegmentationd],
            add_post_restore=False,
            load_strict=True,
            **kwargs,
        )
        self.labels = {"Nuclei": 1}
        self.window = bundle_window(self.bundle_config)
        self.label_colors = {"Nuclei": (0, 255, 0)}

    def pre_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        return [LoadTiled(keys="image", window=self.window), *super().pre_transforms(data)]

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        return [*super().post_transforms(data), InstanceContoursd(keys="inst", label="Nuclei", color=(0, 255, 0))]

    def info(self) -> dict[str, Any]:
        d = super().info()
        d["pathology"] = True
        return d

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: str | None = None) -> tuple[Any, Any]:
        return PolygonWriter(label=self.output_label_key, json=self.output_json_key)(data)
