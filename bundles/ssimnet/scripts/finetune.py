"""Test-time fine-tuning (SSimNet §2.4) as a MONAI inferer.

For every image: copy the network (which holds the shipped weights), restore the optimiser state saved with them,
train the copy for a few epochs on the image's own purified pseudo-label patches, predict with the wrapped inferer,
and discard the copy. Every image restarts from the same checkpoint; nothing is written to disk. No label is used:
the patches come from the image alone.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

import numpy as np
import torch
from monai.inferers import Inferer

from labelfree.transforms.io import tensor_to_rgb

from .data import image_patches
from .loss import SSimNetLoss

__all__ = ["FineTuningInferer"]

log = logging.getLogger(__name__)


class FineTuningInferer(Inferer):
    """Fine-tune a copy of the network on each input's pseudo labels, then run ``inferer`` with the copy.

    Args:
        inferer: the inferer that makes the prediction (e.g. a ``SlidingWindowInferer``).
        ckpt_path: the trained weights (a bare state dict, as ``models/model.pt``; an older
            ``{"model", "optimizer"}`` checkpoint also works).
        optimizer_path: the training's final optimiser state (``labelfree.engines.handlers.optimizer_path``), which seeds
            the fine-tuning Adam; ``None`` or a missing file starts a fresh Adam (unless ``ckpt_path`` holds one).
        epochs: fine-tuning epochs per image (5 in the paper); 0 disables fine-tuning.
        lr: learning rate of the fine-tuning (``None``: the one stored in the checkpoint).
        batch_size: patches per step.
        lam: λ of the SSimNet loss, as in training.
        patch_size, n_per_axis, alpha, n_clusters, contour_on: pseudo-label patches, as in training. These have no
            default here: they come from the bundle's ``configs/common.json``, the one place training and inference
            share.
        seed: seed of the patch order and the flips (each image uses the same seed: results do not depend on order).
    """

    def __init__(
        self,
        inferer: Inferer,
        ckpt_path: str,
        optimizer_path: str | None = None,
        epochs: int = 5,
        lr: float | None = 5e-5,
        batch_size: int = 8,
        *,
        lam: float,
        patch_size: int,
        n_per_axis: int,
        alpha: float,
        n_clusters: int | str,
        contour_on: str,
        seed: int = 0,
    ):
        super().__init__()
        self.inferer, self.ckpt_path, self.optimizer_path = inferer, ckpt_path, optimizer_path
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.loss = SSimNetLoss(lam)
        self.patch_kwargs = dict(
            patch_size=patch_size, n_per_axis=n_per_axis, alpha=alpha, n_clusters=n_clusters, contour_on=contour_on
        )
        self.seed = seed
        self._optim_state: dict | None = None
        self._loaded = False

    def _optimizer_state(self) -> dict | None:
        if not self._loaded:
            if self.optimizer_path is not None and os.path.isfile(self.optimizer_path):
                self._optim_state = torch.load(self.optimizer_path, map_location="cpu", weights_only=True)
            else:
                ckpt = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
                self._optim_state = ckpt.get("optimizer") if isinstance(ckpt, dict) else None
            self._loaded = True
        return self._optim_state

    def _finetune(self, rgb: np.ndarray, model: torch.nn.Module, device: torch.device) -> int:
        data = image_patches(rgb, seed=self.seed, **self.patch_kwargs)
        n = len(data["image"])
        if n == 0:
            return 0
        opt = torch.optim.Adam(model.parameters())
        state = self._optimizer_state()
        if state is not None:
            # load_state_dict keeps the cached tensors and Adam updates them in place: without the copy every image
            # would start from the optimiser state the previous image left behind
            opt.load_state_dict(copy.deepcopy(state))
        if self.lr is not None:
            for g in opt.param_groups:
                g["lr"] = self.lr
        images = torch.from_numpy(data["image"]).float().div(255.0)
        target = torch.cat([torch.from_numpy(data["soft"]), torch.from_numpy(data["voronoi"]).float()], dim=1)
        gen = torch.Generator().manual_seed(self.seed)
        model.train()
        with torch.enable_grad(), torch.autocast(device_type=device.type, enabled=False):
            for _ in range(self.epochs):
                order = torch.randperm(n, generator=gen)
                for start in range(0, n, self.batch_size):
                    idx = order[start : start + self.batch_size]
                    x, y = images[idx], target[idx]
                    # the same flips as training; exact for both the image and the labels
                    for dim in (2, 3):
                        if torch.rand((), generator=gen) < 0.5:
                            x, y = x.flip(dim), y.flip(dim)
                    opt.zero_grad(set_to_none=True)
                    loss = self.loss(model(x.to(device)), y.to(device))
                    loss.backward()
                    opt.step()
        model.eval()
        return n

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        """
        Args:
            inputs: ``(B, 3, H, W)`` images scaled to [0, 1].
            network: the trained network (left untouched).
        """
        if self.epochs <= 0:
            return self.inferer(inputs, network, *args, **kwargs)
        outs = []
        for b in range(inputs.shape[0]):
            x = inputs[b : b + 1]
            rgb = tensor_to_rgb(x[0])
            model = copy.deepcopy(network)
            if min(rgb.shape[:2]) >= self.patch_kwargs["patch_size"]:
                n = self._finetune(rgb, model, x.device)
                log.debug("fine-tuned on %d pseudo-label patches", n)
            with torch.no_grad():
                outs.append(self.inferer(x, model, *args, **kwargs))
            del model
        return torch.cat(outs, dim=0)
