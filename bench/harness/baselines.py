"""Classic label-free baselines a pathology user would reach for instead of a trained model."""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import rgb2hed
from skimage.filters import threshold_otsu

from labelfree.core.imageio import as_rgb_uint8
from labelfree.transforms.instances import instances_from_map
from labelfree.transforms.stain import MIN_TISSUE_FRACTION, has_tissue

__all__ = ["otsu_haematoxylin_watershed"]


def otsu_haematoxylin_watershed(
    image: np.ndarray | torch.Tensor,
    min_size: int = 30,
    h: float = 2.0,
    min_tissue_fraction: float = MIN_TISSUE_FRACTION,
) -> np.ndarray:
    """Otsu threshold on the haematoxylin channel (Ruifrok colour deconvolution, ``skimage.color.rgb2hed``), then
    the project's distance-transform watershed (:func:`labelfree.transforms.instances.instances_from_map`).

    Args:
        image: RGB tile, ``(H, W, 3)`` or ``(3, H, W)``.
        min_size: smallest nucleus kept, in pixels.
        h: watershed marker depth.
        min_tissue_fraction: below this fraction of tissue pixels the tile is blank and the result empty.

    Returns:
        ``(H, W)`` int32 instance map.
    """
    rgb = as_rgb_uint8(image)
    if not has_tissue(rgb, min_tissue_fraction):
        return np.zeros(rgb.shape[:2], dtype=np.int32)
    hema = rgb2hed(rgb)[..., 0]
    return instances_from_map(hema > threshold_otsu(hema), min_size=min_size, h=h)
