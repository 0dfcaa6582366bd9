"""SSimNet loss (eq. 5): ``λ · BCE(p, soft label) + (1 − λ) · CE(logits, Voronoi tri-label, ignore)``, plus, for a
network with a third output, the squared error of its distance to each nucleus's edge; optionally every pixel weighted
by a given map (the U-Net's separation weight, :func:`labelfree.transforms.border_weight.border_weight`)."""

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

    With ``weighted``, the target's last channel is a per-pixel weight (self-training's ``border_weight``): each
    pixel's BCE and CE are multiplied by it, and each term is still averaged over the pixels it covers (as the U-Net
    paper's weighted loss), so a weight of 1 everywhere gives the unweighted loss. The distance term is not weighted.

    Args:
        lam: weight λ of the soft-label BCE (0.9 in the paper).
        ignore_index: tri-label value that the CE ignores.
        distance_weight: weight of the distance term (1: the terms weigh alike; not tuned).
        weighted: the target's last channel is a per-pixel weight of the two segmentation terms.
    """

    def __init__(self, lam: float = 0.9, ignore_index: int = 2, distance_weight: float = 1.0, weighted: bool = False):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        self.lam, self.ignore_index, self.distance_weight = lam, ignore_index, distance_weight
        self.weighted = bool(weighted)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            logits: ``(B, 2, H, W)``, or ``(B, 3, H, W)`` with the distance output last.
            target: ``(B, 2, H, W)``: soft label, tri-label; or ``(B, 3, H, W)`` with the distance target last; with
                ``weighted``, one channel more: the weight, last.
        """
        weight = None
        if self.weighted:
            if target.ndim != 4 or target.shape[1] < 3:
                raise ValueError(
                    f"a weighted loss expects the weight as the target's last channel, got {tuple(target.shape)}"
                )
            weight, target = target[:, -1].float(), target[:, :-1]
        ok = logits.ndim == 4 and target.ndim == 4 and target.shape[0] == logits.shape[0]
        ok = ok and target.shape[2:] == logits.shape[2:] and 2 <= target.shape[1] <= logits.shape[1] <= 3
        if not ok:
            raise ValueError(
                f"expected (B, 2 or 3, H, W) logits and target (no more target channels than outputs), got "
                f"{tuple(logits.shape)}, {tuple(target.shape)}"
            )
        loss = self._segmentation(logits[:, :2], target[:, :2], weight)
        if target.shape[1] == 3:
            loss = loss + self.distance_weight * self._distance(logits[:, 2], target[:, 2])
        return loss

    @staticmethod
    def _distance(out: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        known = dist >= 0
        if not bool(known.any()):
            return out.sum() * 0.0
        return F.mse_loss(out.float()[known], dist.float()[known])

    def _segmentation(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        soft = target[:, 0].float()
        tri = target[:, 1].round().long()
        margin = (logits[:, 1] - logits[:, 0]).float()
        known = soft >= 0
        if weight is not None:
            return self._weighted(logits, margin, soft, tri, known, weight)
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

    def _weighted(
        self,
        logits: torch.Tensor,
        margin: torch.Tensor,
        soft: torch.Tensor,
        tri: torch.Tensor,
        known: torch.Tensor,
        weight: torch.Tensor,
    ) -> torch.Tensor:
        """Both terms with each pixel's loss times its weight, averaged over the pixels the term covers."""
        if bool(known.any()):
            bce_px = F.binary_cross_entropy_with_logits(margin[known], soft[known], reduction="none")
            bce = (bce_px * weight[known]).mean()
        else:
            bce = logits.sum() * 0.0
        valid = tri != self.ignore_index
        if bool(valid.any()):
            ce_px = F.cross_entropy(logits.float(), tri, ignore_index=self.ignore_index, reduction="none")
            ce = (ce_px[valid] * weight[valid]).mean()
        else:
            ce = logits.sum() * 0.0
        return self.lam * bce + (1.0 - self.lam) * ce
