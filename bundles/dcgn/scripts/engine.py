"""Ignite glue for unsupervised training: the target is the image itself or features computed from it, never a label."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from monai.engines.utils import PrepareBatch

__all__ = ["PrepareBatchImageAsTarget"]


class PrepareBatchImageAsTarget(PrepareBatch):
    """Return ``(image, target)`` so that ``SupervisedTrainer`` calls ``loss(pred, target)``; no label is read.

    Args:
        image_key: the network input.
        target_key: what the mixture is fitted on: the input itself (the paper, the default) or per-pixel features
            of the same pixels (``labelfree.transforms.mixture_features``), cropped and flipped with it.
    """

    def __init__(self, image_key: str = "image", target_key: str | None = None):
        self.image_key = image_key
        self.target_key = image_key if target_key is None else target_key

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image = batchdata[self.image_key].to(device=device, non_blocking=non_blocking, **kwargs)
        if self.target_key == self.image_key:
            return image, image
        return image, batchdata[self.target_key].to(device=device, non_blocking=non_blocking, **kwargs)
