"""Where the tissue is on a slide thumbnail: stained pixels, without glass, black borders or pen marks.

Works at low resolution (a few µm per pixel), so a slide's tissue is found in well under a second and only tissue
tiles go through the network. Rules, all label-free:

* *stained*: optical density summed over RGB above a threshold — Otsu's on the thumbnail, but never below
  ``min_od`` (glass with dust) and never above ``max_threshold_od`` (a slide that is nearly all tissue would otherwise
  put the threshold inside the tissue);
* *not black*: scanner borders, slide labels and black ink are darker than any H&E stain (all channels < ``dark``);
* *not pen*: H&E absorbs green light most (haematoxylin and eosin both), so stained tissue is never greener than it is
  red; blue and green marker is (``G > R + pen_margin``);
* small specks removed and holes filled, then dilated by ``dilate`` pixels so a tissue edge is never cut.
"""

from __future__ import annotations

import numpy as np
from monai.utils import TransformBackends
from scipy import ndimage

__all__ = ["tissue_mask", "TissueMask"]


def tissue_mask(
    rgb: np.ndarray,
    min_od: float = 0.15,
    max_threshold_od: float = 0.6,
    dark: int = 50,
    pen_margin: int = 15,
    min_pixels: int = 16,
    dilate: int = 2,
) -> np.ndarray:
    """Tissue mask of a low-resolution ``(H, W, 3)`` uint8 RGB thumbnail. Returns ``(H, W)`` bool.

    Args:
        rgb: the thumbnail (also accepted channel-first ``(3, H, W)``).
        min_od: lowest summed optical density that counts as stained.
        max_threshold_od: highest threshold Otsu may choose.
        dark: pixels with every channel below this are black border or ink.
        pen_margin: pixels with ``G > R + pen_margin`` are blue or green marker.
        min_pixels: stained components smaller than this are specks.
        dilate: pixels added around the tissue.
    """
    from skimage.filters import threshold_otsu

    arr = np.asarray(rgb)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = np.moveaxis(arr, 0, -1)
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    # optical density through a 256-entry table: no float copy of the thumbnail (a 2048² one would take 150 MB)
    lut = (-np.log((np.arange(256, dtype=np.float32) + 1.0) / 256.0)).astype(np.float32)
    od = lut[arr[..., 0]] + lut[arr[..., 1]] + lut[arr[..., 2]]
    stained = od > min_od
    thr = min_od
    if stained.sum() > 64:
        thr = float(np.clip(threshold_otsu(od[od > min_od * 0.5]), min_od, max_threshold_od))
    mask = od > thr
    mask &= ~((arr[..., 0] < dark) & (arr[..., 1] < dark) & (arr[..., 2] < dark))
    mask &= ~(arr[..., 1].astype(np.int16) > arr[..., 0].astype(np.int16) + pen_margin)
    lab, n = ndimage.label(mask)
    if n:
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        small = sizes < min_pixels
        small[0] = False
        mask[small[lab]] = False
    mask = ndimage.binary_fill_holes(mask)
    if dilate > 0 and mask.any():
        mask = ndimage.binary_dilation(mask, iterations=int(dilate))
    return mask


class TissueMask:
    """Array transform: ``(3, H, W)`` uint8 RGB thumbnail → ``(1, H, W)`` bool tissue mask (see :func:`tissue_mask`).

    Args:
        kwargs: :func:`tissue_mask`'s thresholds.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs

    def __call__(self, img):
        """Args:
            img: ``(3, H, W)`` RGB, numpy or torch.

        Returns:
            ``(1, H, W)`` bool, of the input's type.
        """
        mask = tissue_mask(np.asarray(img.cpu() if hasattr(img, "cpu") else img), **self.kwargs)[None]
        if hasattr(img, "cpu"):
            import torch

            return torch.as_tensor(mask, device=img.device)
        return mask
