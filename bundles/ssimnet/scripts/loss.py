"""SSimNet loss (eq. 5): ``λ · BCE(p, soft label) + (1 − λ) · CE(logits, Voronoi tri-label, ignore)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SSimNetLoss"]


class SSimNetLoss(nn.Module):
    """Loss on 2-channel logits against a 2-channel target (channel 0: soft label in [0, 1]; channel 1: tri-label).

    The BCE term uses the nucleus probability of the 2-class softmax, ``p = sigmoid(z1 − z0)``, through the logits
    for numerical stability; it covers every pixel whose soft label is in [0, 1]. A negative soft label marks a pixel
    the loss leaves out (self-training's ignored objects: ``scripts.self_training``); the paper's soft labels are
    never negative, so its loss is unchanged. The CE term covers only pixels whose tri-label is not
    ``ignore_index``; a batch without such pixels contributes 0 rather than NaN.

    Args:
        lam: weight λ of the soft-label BCE (0.9 in the paper).
        ignore_index: tri-label value that the CE ignores.
    """

    def __init__(self, lam: float = 0.9, ignore_index: int = 2):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        self.lam, self.ignore_index = lam, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            logits: ``(B, 2, H, W)``.
            target: ``(B, 2, H, W)``: soft label, tri-label.
        """
        if logits.ndim != 4 or logits.shape[1] != 2 or target.shape != logits.shape:
            raise ValueError(
                f"expected (B, 2, H, W) logits and target, got {tuple(logits.shape)}, {tuple(target.shape)}"
            )
        soft = target[:, 0].float()
        tri = target[:, 1].round().long()
        margin = (logits[:, 1] - logits[:, 0]).float()
        known = soft >= 0
        if bool(known.all()):  # the paper's labels: no masked copy, the same reduction as before
            bce = F.binary_cross_entropy_with_logits(margin, soft)
        elif bool(known.any()):
            bce = F.binary_cross_entropy_with_logits(margin[known], soft[known])
        else:
            bce = logits.sum() * 0.0
        if (tri != self.ignore_index).any():
            ce = F.cross_entropy(logits.float(), tri, ignore_index=self.ignore_index)
        else:
            ce = logits.sum() * 0.0
        return self.lam * bce + (1.0 - self.lam) * ce
