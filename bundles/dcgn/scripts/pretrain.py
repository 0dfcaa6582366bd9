"""Label-free pretraining of DCGN's MobileNetV2 encoder: masked stain inpainting on unlabelled tiles.

The paper starts its encoder from ImageNet weights, which cannot be downloaded here. This pretext task needs only the
tiles: the network sees a crop (stain-normalised, colour-augmented, flipped, as in training) with half of its 32×32
blocks blanked out, and regresses the haematoxylin and eosin concentrations (``labelfree.transforms.mixture_features``,
Vahadane) of the whole crop, standardised per crop. Visible blocks teach the encoder to read stain content through
any colouring (the augmentation changes the input, never the target); hidden blocks can only be filled in from the
context around them, which asks for nuclei and tissue structure, not colour alone (the masked-image-modelling idea of
MAE / SimMIM, with a stain target instead of pixels). Only the encoder (``features.*``) is kept, in the torchvision
layout that ``MobileNetV2UNet.load_encoder_weights`` reads (``--pretrained_path``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .engine import PrepareBatchImageAsTarget

__all__ = ["MaskedStainBatch", "MaskedStainLoss", "encoder_of"]


def block_mask(shape: tuple[int, int, int], block: int, ratio: float, device: torch.device | str) -> torch.Tensor:
    """``(B, H, W)`` bool, True on the hidden blocks: each ``block × block`` cell hidden with probability ``ratio``.

    Drawn from torch's global generator, so ``set_determinism`` makes it repeatable.
    """
    b, h, w = shape
    cells = torch.rand(b, -(-h // block), -(-w // block)) < ratio
    return cells.repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :h, :w].to(device)


class MaskedStainBatch(PrepareBatchImageAsTarget):
    """``(masked image, target)`` for the pretext task; no label is read.

    Args:
        image_key: the network input, ``(B, 3, H, W)`` min-max normalised.
        target_key: the stain concentrations of the same pixels, ``(B, 2, H, W)``.
        block: side of the hidden blocks, in pixels.
        ratio: fraction of blocks hidden.
        fill: value of the hidden pixels (mid-grey of the min-max input).

    The target is the concentrations standardised per sample and channel, stacked with the hidden-block mask as a
    third channel, ``(B, 3, H, W)``, for :class:`MaskedStainLoss`.
    """

    def __init__(
        self,
        image_key: str = "image",
        target_key: str = "features",
        block: int = 32,
        ratio: float = 0.5,
        fill: float = 0.5,
    ):
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {ratio}")
        super().__init__(image_key, target_key)
        self.block, self.ratio, self.fill = block, ratio, fill

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image, stains = super().__call__(batchdata, device, non_blocking, **kwargs)
        stains = stains.float()
        hidden = block_mask((image.shape[0], image.shape[2], image.shape[3]), self.block, self.ratio, image.device)
        masked = torch.where(hidden[:, None], torch.full_like(image, self.fill), image)
        mean = stains.mean(dim=(2, 3), keepdim=True)
        std = stains.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
        return masked, torch.cat([(stains - mean) / std, hidden[:, None].float()], dim=1)


class MaskedStainLoss(nn.Module):
    """Mean squared error of the predicted standardised concentrations, hidden pixels weighted ``hidden_weight``.

    Args:
        hidden_weight: weight of a hidden pixel relative to a visible one (visible pixels still teach the encoder
            to read stains through the colour augmentation).

    ``pred`` ``(B, C, H, W)``, ``target`` ``(B, C + 1, H, W)`` from :class:`MaskedStainBatch` (last channel: hidden).
    """

    def __init__(self, hidden_weight: float = 2.0):
        super().__init__()
        self.hidden_weight = hidden_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        values, hidden = target[:, :-1], target[:, -1:]
        if pred.shape != values.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} does not match the target {tuple(values.shape)}")
        weight = 1.0 + (self.hidden_weight - 1.0) * hidden
        return (weight * (pred - values) ** 2).sum() / (weight.sum() * pred.shape[1])


def encoder_of(network: nn.Module) -> nn.Module:
    """The encoder alone, as a module whose state dict has torchvision's ``features.*`` keys."""
    net = network.module if hasattr(network, "module") else network
    return nn.ModuleDict({"features": net.features})
