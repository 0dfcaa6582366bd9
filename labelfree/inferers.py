"""Test-time augmentation by flips, as a MONAI inferer that wraps another one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["FlipEnsembleInferer"]

ALL_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


class FlipEnsembleInferer(Inferer):
    """Average the output of ``inferer`` over the input and its flipped copies.

    Each copy's output is flipped back before averaging, so the result is aligned with the input. H&E tiles have
    no preferred orientation; the U-Nets here are trained with random flips, and averaging over the four flips of
    the two spatial axes removes most of the orientation-dependent noise of a single pass at four times the cost.
    The output is averaged as returned (logits for the bundles here, before their ``Activationsd``).

    Args:
        inferer: the inferer that makes each prediction (e.g. a ``SlidingWindowInferer``).
        flips: the spatial dims flipped in each pass (negative = counted from the end, so ``(-1,)`` is a flip of
            W on ``(B, C, H, W)``); ``()`` is the unflipped input. Default: none, W, H, and both.
    """

    def __init__(self, inferer: Inferer, flips: Sequence[Sequence[int]] = ALL_FLIPS):
        super().__init__()
        self.inferer = inferer
        self.flips = [tuple(int(d) for d in f) for f in flips]
        if not self.flips:
            raise ValueError("flips must hold at least one entry; use () for the unflipped input")
        if any(d >= 0 for f in self.flips for d in f):
            raise ValueError(f"flip dims must be negative (spatial dims counted from the end), got {self.flips}")

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """
        Args:
            inputs: ``(B, C, *spatial)``.
            network: passed to ``inferer``.

        Returns:
            the mean of the de-flipped outputs, shaped as ``inferer``'s output.
        """
        total = None
        for dims in self.flips:
            out = self.inferer(inputs.flip(dims) if dims else inputs, network, *args, **kwargs)
            out = out.flip(dims) if dims else out
            total = out if total is None else total + out
        return total / len(self.flips)
