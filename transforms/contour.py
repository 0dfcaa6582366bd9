"""Active-contour smoothing of a binary mask: morphological Chan–Vese (Márquez-Neila et al., PAMI 2014) in torch.

The algorithm and its operators are those of ``skimage.segmentation.morphological_chan_vese`` (the result is the
same bit for bit, see the tests); torch boolean shifts replace scipy's binary erosions, which makes an iteration on a
1000×1000 tile about 20× faster on two cores. After the contour, objects smaller than ``min_size`` are removed and
holes are filled.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type
from scipy import ndimage as ndi

__all__ = [
    "morphological_chan_vese",
    "remove_small_objects",
    "fill_mask_holes",
    "ActiveContour",
    "ActiveContourd",
    "ActiveContourD",
    "ActiveContourDict",
]


def _shift(u: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[y, x] = u[y + dy, x + dx]``, False outside the image (scipy's default ``border_value=0``)."""
    out = torch.zeros_like(u)
    h, w = u.shape
    out[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)] = u[
        max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)
    ]
    return out


# the four 3-pixel line elements of the 2D curvature operators: vertical, diagonal, horizontal, anti-diagonal
_LINES = ((1, 0), (1, 1), (0, 1), (1, -1))


def _sup_inf(u: torch.Tensor) -> torch.Tensor:
    # an element-wise OR of the four lines: a stacked ``.any(dim=0)`` reduction cost ten times more
    out = torch.zeros_like(u)
    for dy, dx in _LINES:
        out |= u & _shift(u, dy, dx) & _shift(u, -dy, -dx)
    return out


def _inf_sup(u: torch.Tensor) -> torch.Tensor:
    out = torch.ones_like(u)
    for dy, dx in _LINES:
        out &= u | _shift(u, dy, dx) | _shift(u, -dy, -dx)
    return out


def _gradient_nonzero(u: torch.Tensor) -> torch.Tensor:
    """Where ``np.gradient`` of the level set is non-zero (central differences, one-sided at the edges)."""
    f = u.to(torch.int8)
    gy = torch.zeros_like(f)
    gx = torch.zeros_like(f)
    gy[1:-1] = f[2:] - f[:-2]
    gy[0], gy[-1] = f[1] - f[0], f[-1] - f[-2]
    gx[:, 1:-1] = f[:, 2:] - f[:, :-2]
    gx[:, 0], gx[:, -1] = f[:, 1] - f[:, 0], f[:, -1] - f[:, -2]
    return (gy != 0) | (gx != 0)


def morphological_chan_vese(
    image: np.ndarray | torch.Tensor,
    init: np.ndarray | torch.Tensor,
    num_iter: int = 10,
    smoothing: int = 1,
    lambda1: float = 1.0,
    lambda2: float = 1.0,
) -> np.ndarray:
    """Morphological active contour without edges.

    Args:
        image: ``(H, W)`` grey image (for example L*).
        init: ``(H, W)`` initial level set (bool).
        num_iter: iterations.
        smoothing: curvature smoothing steps per iteration.
        lambda1: weight of the inside region (where ``init`` is True).
        lambda2: weight of the outside region.

    Returns:
        ``(H, W)`` bool mask.
    """
    img = torch.as_tensor(np.asarray(image, dtype=np.float64))
    u = torch.as_tensor(np.asarray(init)).bool().clone()
    if img.ndim != 2 or img.shape != u.shape:
        raise ValueError(f"image and init must be 2D and of the same shape, got {tuple(img.shape)}, {tuple(u.shape)}")
    if min(img.shape) < 3:
        return u.numpy()
    step = 0
    total = img.sum()
    for _ in range(num_iter):
        inside = u.sum()
        outside = u.numel() - inside
        # dense sums and boolean algebra: masked selection and nested torch.where cost several times more
        s1 = (img * u).sum()
        c0 = (total - s1) / (outside + 1e-8)
        c1 = s1 / (inside + 1e-8)
        aux = lambda1 * (img - c1) ** 2 - lambda2 * (img - c0) ** 2
        active = _gradient_nonzero(u)
        u = (active & (aux < 0)) | (u & ~(active & (aux > 0)))
        for _ in range(smoothing):
            # skimage alternates SI∘IS and IS∘SI from one smoothing step to the next
            u = _sup_inf(_inf_sup(u)) if step % 2 == 0 else _inf_sup(_sup_inf(u))
            step += 1
    return u.numpy()


def remove_small_objects(mask: np.ndarray, min_size: int, connectivity: int = 1) -> np.ndarray:
    """Drop connected components of fewer than ``min_size`` pixels from a 2D bool mask."""
    structure = ndi.generate_binary_structure(2, connectivity)
    lab, n = ndi.label(mask, structure=structure)
    if n == 0 or min_size <= 1:
        return mask.astype(bool)
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[lab]


def fill_mask_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a 2D bool mask: background components (4-connected) that do not touch the image border.

    The same result as ``scipy.ndimage.binary_fill_holes`` (whose default structure is 4-connected too), by one
    labelling of the background instead of an iterated dilation from the border.
    """
    mask = np.asarray(mask, dtype=bool)
    lab, n = ndi.label(~mask)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, dtype=bool)
    outside[np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])] = True
    outside[0] = True  # label 0 is the mask itself
    return mask | ~outside[lab]


class ActiveContour(Transform):
    """Smooth a binary mask with morphological Chan–Vese on a grey image, then clean it.

    Args:
        num_iter: Chan–Vese iterations (the mask is already close to the solution, a few suffice).
        smoothing: curvature smoothing steps per iteration.
        lambda1: inside weight.
        lambda2: outside weight.
        min_size: components smaller than this (pixels) are removed afterwards.
        fill_holes: fill holes inside components afterwards.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        num_iter: int = 10,
        smoothing: int = 1,
        lambda1: float = 1.0,
        lambda2: float = 1.0,
        min_size: int = 30,
        fill_holes: bool = True,
    ):
        self.num_iter, self.smoothing, self.lambda1, self.lambda2 = num_iter, smoothing, lambda1, lambda2
        self.min_size, self.fill_holes = min_size, fill_holes

    def __call__(self, mask: np.ndarray | torch.Tensor, image: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """
        Args:
            mask: ``(1, H, W)`` initial binary mask.
            image: ``(1, H, W)`` grey image the contour is attracted by (for example L* of the haematoxylin image).

        Returns:
            ``(1, H, W)`` bool mask, of ``mask``'s type (tensor in, tensor out).
        """
        m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
        g = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image)
        if m.ndim != 3 or m.shape[0] != 1 or g.shape != m.shape:
            raise ValueError(f"mask and image must both be (1, H, W), got {m.shape} and {g.shape}")
        out = morphological_chan_vese(
            g[0], m[0].astype(bool), self.num_iter, self.smoothing, self.lambda1, self.lambda2
        )
        out = remove_small_objects(out, self.min_size)
        if self.fill_holes:
            out = fill_mask_holes(out)
        return convert_to_dst_type(out[None], dst=mask, dtype=bool)[0]  # tensor in, tensor out


class ActiveContourd(MapTransform):
    """Dictionary twin of :class:`ActiveContour`: smooths each mask in ``keys`` on ``image_key``, in place."""

    backend = ActiveContour.backend

    def __init__(self, keys: KeysCollection, image_key: str, allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.contour = ActiveContour(**kwargs)

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.contour(d[key], d[self.image_key])
        return d


ActiveContourD = ActiveContourDict = ActiveContourd
