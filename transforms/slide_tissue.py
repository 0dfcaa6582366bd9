"""Where the tissue is on a slide thumbnail: stained pixels of H&E colours, without glass, black borders or pen.

Works at low resolution (a few µm per pixel), so a slide's tissue is found in well under a second and only tissue
tiles go through the network. Rules, all label-free:

* *stained*: optical density summed over RGB (:func:`labelfree.transforms.stain.optical_density`) above a threshold —
  Otsu's on the thumbnail, but never below ``min_od`` (glass with dust) and never above ``max_threshold_od`` (a slide
  that is nearly all tissue would otherwise put the threshold inside the tissue). The tile check's brightness rule
  (L* < 80) is not used: pale stroma at this scale is brighter than that;
* *H&E colours* (:func:`labelfree.transforms.stain.he_colours`, the blank-tile check's rules): not black (scanner
  borders, labels, black ink), not grey, not a clipped colour, not greener than H&E;
* *not blue pen*: haematoxylin and eosin both absorb green more than red, so tissue is never greener than it is red;
  blue marker is (``G > R + pen_margin``);
* specks removed and holes filled, then dilated by ``dilate`` pixels so a tissue edge is never cut.
"""

from __future__ import annotations

import numpy as np
from monai.utils import TransformBackends
from scipy import ndimage

from labelfree.transforms.stain import he_colours, optical_density

__all__ = ["slide_tissue_mask", "SlideTissueMask"]


def slide_tissue_mask(
    rgb: np.ndarray,
    min_od: float = 0.15,
    max_threshold_od: float = 0.6,
    pen_margin: int = 15,
    min_pixels: int = 16,
    dilate: int = 2,
) -> np.ndarray:
    """Tissue mask of a low-resolution ``(H, W, 3)`` uint8 RGB thumbnail. Returns ``(H, W)`` bool.

    Args:
        rgb: the thumbnail (also accepted channel-first ``(3, H, W)``).
        min_od: lowest summed optical density that counts as stained.
        max_threshold_od: highest threshold Otsu may choose.
        pen_margin: pixels with ``G > R + pen_margin`` are blue or green marker.
        min_pixels: stained components smaller than this are specks.
        dilate: pixels added around the tissue.
    """
    from skimage.filters import threshold_otsu

    arr = np.asarray(rgb)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = np.moveaxis(arr, 0, -1)
    arr = np.ascontiguousarray(arr[..., :3])
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    od = optical_density(arr).sum(axis=-1)  # a table lookup: no float copy of the thumbnail's three channels
    thr = min_od
    if (od > min_od).sum() > 64:
        thr = float(np.clip(threshold_otsu(od[od > min_od * 0.5]), min_od, max_threshold_od))
    mask = (od > thr) & he_colours(arr)
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


class SlideTissueMask:
    """Array transform: ``(3, H, W)`` uint8 RGB thumbnail → ``(1, H, W)`` bool tissue mask (:func:`slide_tissue_mask`).

    Args:
        kwargs: :func:`slide_tissue_mask`'s thresholds.
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
        mask = slide_tissue_mask(np.asarray(img.cpu() if hasattr(img, "cpu") else img), **self.kwargs)[None]
        if hasattr(img, "cpu"):
            import torch

            return torch.as_tensor(mask, device=img.device)
        return mask
