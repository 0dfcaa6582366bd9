"""MONAI inferers the bundles share: test-time augmentation by flips, a sliding window that accepts tiles smaller than
half its window, and bfloat16 autocast on CPUs that compute it in hardware."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import Inferer, SlidingWindowInferer
from monai.utils import ensure_tuple_rep

__all__ = ["AutocastInferer", "FlipEnsembleInferer", "PaddedSlidingWindowInferer", "native_bf16_cpu"]

#: MONAI/torch padding modes and the numpy modes that extend them to pads longer than the input
_NUMPY_PAD = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}

ALL_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


class FlipEnsembleInferer(Inferer):
    """Average the output of ``inferer`` over the input and its flipped copies.

    Each copy's output is flipped back before averaging, so the result is aligned with the input. H&E tiles have
    no preferred orientation; the U-Nets here are trained with random flips, and averaging over the four flips of
    the two spatial axes removes most of the orientation-dependent noise of a single pass at four times the cost.
    The output is averaged as returned (logits for the bundles here, before their ``Activationsd``).

    A pass can also see the input re-coloured (``recolour``, e.g. stain-normalised to the colours the network was
    trained on): a second colouring of the same tissue averages out what a network reads from one slide's stain rather
    than from the nuclei, at no extra network cost when it replaces a flip's pass.

    Args:
        inferer: the inferer that makes each prediction (e.g. a ``SlidingWindowInferer``).
        flips: the spatial dims flipped in each pass (negative = counted from the end, so ``(-1,)`` is a flip of
            W on ``(B, C, H, W)``); ``()`` is the unflipped input. Default: none, W, H, and both.
        recolour: ``(C, *spatial)`` → ``(C, *spatial)`` applied to each image of the batch for the passes
            ``recoloured`` names (computed once per call); ``None``: no pass is re-coloured.
        recoloured: one flag per entry of ``flips``: whether that pass sees the re-coloured input; ``None``: none.
        background_recolour: re-colour on a worker thread while the passes before the first re-coloured one run, so
            that a CPU's second core does the re-colouring (stain separation, numpy) during the network's own work
            instead of after it; the same output either way (``recolour`` is a function of the input alone).
    """

    def __init__(
        self,
        inferer: Inferer,
        flips: Sequence[Sequence[int]] = ALL_FLIPS,
        recolour: Callable[[torch.Tensor], torch.Tensor] | None = None,
        recoloured: Sequence[bool] | None = None,
        background_recolour: bool = True,
    ):
        super().__init__()
        self.inferer = inferer
        self.flips = [tuple(int(d) for d in f) for f in flips]
        if not self.flips:
            raise ValueError("flips must hold at least one entry; use () for the unflipped input")
        if any(d >= 0 for f in self.flips for d in f):
            raise ValueError(f"flip dims must be negative (spatial dims counted from the end), got {self.flips}")
        self.recoloured = [False] * len(self.flips) if recoloured is None else [bool(r) for r in recoloured]
        if len(self.recoloured) != len(self.flips):
            raise ValueError(f"recoloured needs one flag per flip ({len(self.flips)}), got {len(self.recoloured)}")
        if any(self.recoloured) and recolour is None:
            raise ValueError("recoloured names passes to re-colour but no recolour transform is given")
        self.recolour = recolour
        self.background_recolour = bool(background_recolour)

    def _recoloured(self, inputs: torch.Tensor) -> torch.Tensor:
        """``recolour`` of each image of the batch, stacked, on the CPU (the caller moves it to ``inputs``' device)."""
        return torch.stack([torch.as_tensor(self.recolour(img)) for img in inputs.detach().cpu()])

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """
        Args:
            inputs: ``(B, C, *spatial)``.
            network: passed to ``inferer``.

        Returns:
            the mean of the de-flipped outputs (of the re-coloured input where ``recoloured`` says so), shaped as
            ``inferer``'s output.
        """
        total, other = None, None
        pending: Future | None = None
        if self.background_recolour and any(self.recoloured) and not self.recoloured[0]:
            pending = _recolour_worker().submit(self._recoloured, inputs)
        for dims, recoloured in zip(self.flips, self.recoloured):
            x = inputs
            if recoloured:
                if other is None:
                    other = (pending.result() if pending is not None else self._recoloured(inputs)).to(inputs)
                x = other
            out = self.inferer(x.flip(dims) if dims else x, network, *args, **kwargs)
            out = out.flip(dims) if dims else out
            total = out if total is None else total + out
        return total / len(self.flips)


@lru_cache(maxsize=1)
def _recolour_worker() -> ThreadPoolExecutor:
    """The one thread :class:`FlipEnsembleInferer` re-colours on: created on first use, shared by every inferer (a
    call waits for its own re-colouring before it returns, so one thread is never behind)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="recolour")


class PaddedSlidingWindowInferer(SlidingWindowInferer):
    """MONAI's ``SlidingWindowInferer`` for inputs of any size.

    MONAI pads an input smaller than the window with ``torch.nn.functional.pad``, whose reflect mode needs the pad to
    be shorter than the input: a 64-pixel tile under a 256-pixel window fails. Here such an input is padded first, by
    numpy's repeated reflection (the same pixels as torch's reflection wherever torch can do it), the window runs on
    the padded input, and the output is cropped back. Inputs at least as large as the window take MONAI's own path
    unchanged.

    Args:
        args, kwargs: as ``SlidingWindowInferer``.
    """

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """
        Args:
            inputs: ``(B, C, *spatial)``.
            network: the network, as for ``SlidingWindowInferer``.

        Returns:
            the output for the unpadded input, ``(B, C_out, *spatial)``.
        """
        spatial = tuple(inputs.shape[2:])
        roi = ensure_tuple_rep(self.roi_size, len(spatial))
        mode = str(getattr(self.padding_mode, "value", self.padding_mode))
        if all(s >= r for s, r in zip(spatial, roi)) or mode not in _NUMPY_PAD:
            return super().__call__(inputs, network, *args, **kwargs)
        padded, crop = inputs, [slice(None), slice(None)]
        for axis, (size, window) in enumerate(zip(spatial, roi)):
            diff = max(window - size, 0)
            before = diff // 2  # MONAI's split of the pad, so the window sees the tile where MONAI would put it
            index = np.pad(np.arange(size), (before, diff - before), mode=_NUMPY_PAD[mode])
            padded = padded.index_select(axis + 2, torch.as_tensor(index, device=inputs.device))
            crop.append(slice(before, before + size))
        return super().__call__(padded, network, *args, **kwargs)[tuple(crop)]


@lru_cache(maxsize=1)
def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX-BF16, read from ``/proc/cpuinfo``).

    There oneDNN's bfloat16 convolutions run the bundles' networks about twice as fast as float32 (SSimNet's U-Net on a
    1000² tile, 2 cores: 0.46 s -> 0.25 s, the same Dice and AJI on MoNuSeg and CPM-15); elsewhere bfloat16 is emulated
    and slower, so the bundles keep float32 there. False where ``/proc/cpuinfo`` cannot be read (not Linux).
    """
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class AutocastInferer(Inferer):
    """Run ``inferer`` under ``torch.autocast`` on the input's device and return float32.

    MONAI's engines autocast on CUDA only (their ``amp``); this brings the same mixed precision to the CPU, where
    bfloat16 keeps float32's range (no loss scaling, no overflow in the logits). The output is cast back to float32,
    so post-processing does not change.

    Args:
        inferer: the inferer to run (e.g. a ``SlidingWindowInferer``).
        enabled: False runs ``inferer`` as it is (float32).
        dtype: the autocast dtype.
    """

    def __init__(self, inferer: Inferer, enabled: bool = True, dtype: torch.dtype | str = torch.bfloat16):
        super().__init__()
        self.inferer, self.enabled = inferer, bool(enabled)
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """
        Args:
            inputs: ``(B, C, *spatial)``.
            network: passed to ``inferer``.

        Returns:
            ``inferer``'s output, float32 when autocast ran.
        """
        if not self.enabled:
            return self.inferer(inputs, network, *args, **kwargs)
        with torch.autocast(device_type=inputs.device.type, dtype=self.dtype):
            out = self.inferer(inputs, network, *args, **kwargs)
        return out.float()
