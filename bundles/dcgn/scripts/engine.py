"""Ignite glue for unsupervised training: the image is its own target."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from monai.engines.utils import PrepareBatch

__all__ = ["PrepareBatchImageAsTarget"]


class PrepareBatchImageAsTarget(PrepareBatch):
    """Return ``(image, image)`` so that ``SupervisedTrainer`` calls ``loss(pred, image)``; no label is read."""

    def __init__(self, image_key: str = "image"):
        self.image_key = image_key

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image = batchdata[self.image_key].to(device=device, non_blocking=non_blocking, **kwargs)
        return image, image
