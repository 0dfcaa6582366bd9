"""SSimNet loss (eq. 5): ``λ · BCE(p, soft label) + (1 − λ) · CE(logits, Voronoi tri-label, ignore)``, plus, for a
network with a third output, the squared error of its distance to each nucleus's edge."""

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

    A network with a third output channel (``distance_head``, self-training only) regresses the distance of each
    pixel to its own nucleus's edge (:func:`labelfree.transforms.edge_distance.edge_distance`, in units of
    :data:`~labelfree.transforms.edge_distance.DISTANCE_UNIT` pixels), given as the target's third channel; the mean
    squared error over the pixels whose distance target is not negative (negative: left out) is added with weight
    ``distance_weight``. A target without that channel (test-time fine-tuning's pseudo labels) trains the first two
    outputs only.

    Args:
        lam: weight λ of the soft-label BCE (0.9 in the paper).
        ignore_index: tri-label value that the CE ignores.
        distance_weight: weight of the distance term (1: the terms weigh alike; not tuned).
    """

    def __init__(self, lam: float = 0.9, ignore_index: int = 2, distance_weight: float = 1.0):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        self.lam, self.ignore_index, self.distance_weight = lam, ignore_index, distance_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            logits: ``(B, 2, H, W)``, or ``(B, 3, H, W)`` with the distance output last.
            target: ``(B, 2, H, W)``: soft label, tri-label; or ``(B, 3, H, W)`` with the distance target last.
        """
        ok = logits.ndim == 4 and target.ndim == 4 and target.shape[0] == logits.shape[0]
        ok = ok and target.shape[2:] == logits.shape[2:] and 2 <= target.shape[1] <= logits.shape[1] <= 3
        if not ok:
            raise ValueError(
                f"expected (B, 2 or 3, H, W) logits and target (no more target channels than outputs), got "
                f"{tuple(logits.shape)}, {tuple(target.shape)}"
            )
        loss = self._segmentation(logits[:, :2], target[:, :2])
        if target.shape[1] == 3:
            loss = loss + self.distance_weight * self._distance(logits[:, 2], target[:, 2])
        return loss

    @staticmethod
    def _distance(out: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        known = dist >= 0
        if not bool(known.any()):
            return out.sum() * 0.0
        return F.mse_loss(out.float()[known], dist.float()[known])

    def _segmentation(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
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
