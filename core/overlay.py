"""Overlays a pathologist can look at: instance contours, and true/false positive colouring against labels."""

from __future__ import annotations

import numpy as np

from labelfree.core.boundaries import inner_boundaries
from labelfree.core.imageio import as_rgb_uint8

__all__ = ["contour_overlay", "error_overlay"]


def contour_overlay(image: np.ndarray, instances: np.ndarray, color: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """Draw the inner boundary of every instance on the image.

    Args:
        image: ``(H, W, 3)`` or ``(3, H, W)`` RGB.
        instances: ``(H, W)`` instance map (0 = background).
        color: contour colour.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    rgb = as_rgb_uint8(image).copy()
    inst = np.squeeze(np.asarray(instances))
    if inst.shape != rgb.shape[:2]:
        raise ValueError(f"instances {inst.shape} and image {rgb.shape[:2]} differ in size")
    rgb[inner_boundaries(inst)] = color
    return rgb


def error_overlay(image: np.ndarray, pred: np.ndarray, gt: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Pixel errors as in the papers' figures: true positives green, false positives yellow, false negatives red.

    Returns:
        ``(H, W, 3)`` uint8 blend of the image and the colour code.
    """
    rgb = as_rgb_uint8(image).astype(np.float32)
    p, g = np.squeeze(pred) > 0, np.squeeze(gt) > 0
    colour = np.zeros_like(rgb)
    colour[p & g] = (0, 200, 0)
    colour[p & ~g] = (255, 220, 0)
    colour[~p & g] = (230, 0, 0)
    hit = (p | g)[..., None]
    return np.where(hit, (1 - alpha) * rgb + alpha * colour, rgb).round().astype(np.uint8)
