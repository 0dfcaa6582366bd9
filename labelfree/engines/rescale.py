"""Tiles of unknown resolution whose nuclei look small, segmented again at twice the scale.

A network trained at 40× (0.25 µm per pixel) sees the nuclei of a 20× scan at half their width and a quarter of their
area, and an instance step whose pixel constants (smallest object, marker depth) were set at the training scale merges
or drops them. A user who states the resolution gets the tile resampled (``input_mpp``,
:mod:`labelfree.transforms.scale`); :class:`RescaleSmallNucleid` decides for a tile whose resolution is not stated,
from what the network found on it: when the median object is below ``area_fraction`` of the median object of the
tiles the checkpoint was trained on, the tile is resampled by ``factor`` and segmented again by the same inferer and
instance steps, and that result replaces the first. With ``factor`` 2 the threshold ½ is the geometric midpoint
between the training area and the quarter area of a scan at half the magnification.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from labelfree.transforms.instances import median_object_area
from labelfree.transforms.scale import ToModelScale

__all__ = ["AREA_FRACTION", "MIN_OBJECTS", "RescaleSmallNucleid", "has_small_nuclei", "reference_object_area"]

#: a tile is segmented again when its median object is below this fraction of the reference (sqrt of 1/4: the
#: geometric midpoint between the training area and the quarter area of a scan at half the magnification)
AREA_FRACTION = 0.5
#: fewer objects than this give no reliable median: the tile keeps its own scale
MIN_OBJECTS = 10


def has_small_nuclei(
    inst: np.ndarray | torch.Tensor,
    reference_area: float,
    area_fraction: float = AREA_FRACTION,
    min_objects: int = MIN_OBJECTS,
) -> bool:
    """Whether a tile with these instances is to be segmented again: at least ``min_objects`` objects whose median
    area is below ``area_fraction × reference_area``."""
    median, count = median_object_area(inst)
    return count >= min_objects and median < area_fraction * reference_area


def reference_object_area(segment: Callable[[np.ndarray], np.ndarray], tiles: Iterable[np.ndarray]) -> float | None:
    """The median over ``tiles`` (``(H, W, 3)`` uint8, e.g. a checkpoint's training tiles) of each tile's median object
    area under ``segment`` (tile → instance map); tiles without objects are left out. ``None`` when none has any."""
    medians = [median for median, count in (median_object_area(segment(rgb)) for rgb in tiles) if count]
    return float(np.median(medians)) if medians else None


class RescaleSmallNucleid:
    """Dictionary transform for a bundle's post-processing, after its instance step: a tile with small nuclei is
    segmented again at ``factor`` times its scale.

    Reads ``inst_key`` (``(1, H, W)`` instances at the network's scale) and ``tile_key`` (the tile as read, ``(3, H,
    W)`` uint8). When the tile has at least ``min_objects`` objects and their median area is below ``area_fraction ×
    reference_area``, the tile is resampled by ``factor`` (antialiased bilinear, as ``--input_mpp`` resamples), made
    the network's input by ``network_input``, run through ``inferer`` and ``instance_steps``, and the keys those steps
    write replace the first pass's; ``rescaled_key`` records the factor used (1 or ``factor``). A no-op when
    ``enabled`` is false (a stated resolution, the slide path).

    Args:
        inferer: the bundle's inferer, ``inferer(x (1, C, H, W), network)`` → ``(1, C_out, H, W)``.
        network: the bundle's network.
        network_input: ``{"image": (3, H, W) uint8}`` → the same dict with the network's input in ``"image"``.
        instance_steps: the bundle's post-processing from the network output ``"pred"`` to ``inst_key``.
        reference_area: the median over the checkpoint's training tiles of each tile's median object area, pixels.
        area_fraction: the tile is segmented again below this fraction of ``reference_area``.
        min_objects: fewer objects give no reliable median: the tile keeps its scale.
        factor: the resampling factor.
        enabled: whether to act at all.
        device: where the network's input goes.
    """

    def __init__(
        self,
        inferer: Callable[..., torch.Tensor],
        network: torch.nn.Module,
        network_input: Callable[[dict], dict],
        instance_steps: Callable[[dict], dict],
        reference_area: float,
        area_fraction: float = AREA_FRACTION,
        min_objects: int = MIN_OBJECTS,
        factor: float = 2.0,
        enabled: bool = True,
        device: str | torch.device = "cpu",
        inst_key: str = "inst",
        tile_key: str = "tile",
        rescaled_key: str = "rescaled",
    ):
        if not (reference_area > 0 and 0 < area_fraction < 1 and factor > 1 and min_objects >= 1):
            raise ValueError(
                "need reference_area > 0, 0 < area_fraction < 1, factor > 1 and min_objects >= 1, got "
                f"{reference_area}, {area_fraction}, {factor} and {min_objects}"
            )
        self.inferer, self.network, self.network_input = inferer, network, network_input
        self.instance_steps, self.reference_area, self.area_fraction = instance_steps, reference_area, area_fraction
        self.min_objects, self.enabled, self.device = int(min_objects), bool(enabled), torch.device(device)
        self.inst_key, self.tile_key, self.rescaled_key = inst_key, tile_key, rescaled_key
        # the zoom of a tile stated at factor × the model's microns per pixel
        self.upscale = ToModelScale(input_mpp=float(factor), model_mpp=1.0, tolerance=0.0)
        self.factor = float(factor)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        d[self.rescaled_key] = 1.0
        if (
            not self.enabled
            or d.get("note")
            or not has_small_nuclei(d[self.inst_key], self.reference_area, self.area_fraction, self.min_objects)
        ):
            return d
        tile = d[self.tile_key]
        x = self.network_input({"image": self.upscale(tile)})["image"]
        with torch.inference_mode():
            pred = self.inferer(torch.as_tensor(x)[None].to(self.device), self.network)[0]
        again = self.instance_steps({"pred": pred, self.tile_key: tile})
        d.update({k: v for k, v in again.items() if k != self.tile_key})
        d[self.rescaled_key] = self.factor
        return d
