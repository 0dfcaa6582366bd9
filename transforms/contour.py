"""Active-contour smoothing of a binary mask: morphological Chan–Vese (Márquez-Neila et al., PAMI 2014) in torch.

The algorithm and its operators are those of ``skimage.segmentation.morphological_chan_vese`` (the result is the
same bit for bit, see the tests); shifts of the mask packed 64 pixels to a word replace scipy's binary erosions.
After the contour, objects smaller than ``min_size`` are removed and holes are filled.
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


class _BitRows:
    """A 2D bool mask as rows of 64-bit words (pixel ``x`` of a row is bit ``x % 64`` of word ``x // 64``).

    The curvature operators are a few dozen shifted ANDs and ORs of the whole mask per smoothing step: on packed rows
    each touches 64 pixels at once, so a step costs what a shift of one row of words costs. Bits past the last column
    are kept 0 (``valid``), so that they never shift back into the image.
    """

    def __init__(self, width: int):
        self.width = width
        self.n_words = (width + 63) // 64
        bits = np.zeros((3, self.n_words * 64), dtype=bool)
        bits[0, :width] = True
        bits[1, 0] = True
        bits[2, width - 1] = True
        #: the image's columns; its first column; its last column
        self.valid, self.first, self.last = self.pack(bits)

    def pack(self, u: np.ndarray) -> np.ndarray:
        """``(H, W')`` bool with ``W' <= 64 · n_words`` → ``(H, n_words)`` uint64."""
        b = np.packbits(np.asarray(u, dtype=bool), axis=1, bitorder="little")
        out = np.zeros((b.shape[0], self.n_words * 8), dtype=np.uint8)
        out[:, : b.shape[1]] = b
        return out.view("<u8")

    def unpack(self, p: np.ndarray) -> np.ndarray:
        """``(H, n_words)`` uint64 → ``(H, width)`` bool."""
        return np.unpackbits(p.view(np.uint8), axis=1, count=self.width, bitorder="little").astype(bool)

    def shift(self, p: np.ndarray, dy: int, dx: int) -> np.ndarray:
        """``out[y, x] = u[y + dy, x + dx]`` for ``dy, dx`` in {-1, 0, 1}, False outside the image (scipy's default
        ``border_value=0``)."""
        if dy == 1:
            p = np.concatenate([p[1:], np.zeros_like(p[:1])])
        elif dy == -1:
            p = np.concatenate([np.zeros_like(p[:1]), p[:-1]])
        if dx == 1:  # bit k takes bit k + 1: the next word's lowest bit comes in at the top
            q = p >> np.uint64(1)
            q[:, :-1] |= p[:, 1:] << np.uint64(63)
            return q
        if dx == -1:  # bit k takes bit k - 1: the last column moves into the padding, which is cleared
            q = p << np.uint64(1)
            q[:, 1:] |= p[:, :-1] >> np.uint64(63)
            return q & self.valid
        return p


# the four 3-pixel line elements of the 2D curvature operators: vertical, diagonal, horizontal, anti-diagonal
_LINES = ((1, 0), (1, 1), (0, 1), (1, -1))


def _sup_inf(rows: _BitRows, u: np.ndarray) -> np.ndarray:
    out = np.zeros_like(u)
    for dy, dx in _LINES:
        out |= u & rows.shift(u, dy, dx) & rows.shift(u, -dy, -dx)
    return out


def _inf_sup(rows: _BitRows, u: np.ndarray) -> np.ndarray:
    out = np.full_like(u, np.iinfo(np.uint64).max)
    for dy, dx in _LINES:
        out &= u | rows.shift(u, dy, dx) | rows.shift(u, -dy, -dx)
    return out & rows.valid


def _gradient_nonzero(rows: _BitRows, u: np.ndarray) -> np.ndarray:
    """Where ``np.gradient`` of the level set is non-zero (central differences, one-sided at the edges): a pixel
    whose two neighbours along a row or a column differ, or, on the border, which differs from its one neighbour."""
    gy = np.empty_like(u)
    gy[1:-1] = u[2:] ^ u[:-2]
    gy[0], gy[-1] = u[1] ^ u[0], u[-1] ^ u[-2]
    right, left = rows.shift(u, 0, 1), rows.shift(u, 0, -1)
    edge = rows.first | rows.last
    gx = ((right ^ left) & ~edge) | ((right ^ u) & rows.first) | ((u ^ left) & rows.last)
    return gy | gx


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
    mask = np.asarray(init.detach().cpu() if isinstance(init, torch.Tensor) else init).astype(bool)
    if img.ndim != 2 or tuple(img.shape) != mask.shape:
        raise ValueError(f"image and init must be 2D and of the same shape, got {tuple(img.shape)}, {mask.shape}")
    if min(img.shape) < 3:
        return mask.copy()
    rows = _BitRows(mask.shape[1])
    u = rows.pack(mask)
    step = 0
    total = img.sum()
    for _ in range(num_iter):
        dense = torch.from_numpy(rows.unpack(u))
        inside = dense.sum()
        outside = dense.numel() - inside
        # dense sums and boolean algebra: masked selection and nested torch.where cost several times more
        s1 = (img * dense).sum()
        c0 = (total - s1) / (outside + 1e-8)
        c1 = s1 / (inside + 1e-8)
        if lambda1 == lambda2 > 0:
            # (img - c1)² - (img - c0)² = (c0 - c1)(2 img - c0 - c1): one comparison with the midpoint per pixel
            # instead of the squares; the same signs unless a pixel lies within rounding of the midpoint
            mid = (c0 + c1) / 2
            if c1 < c0:
                closer_to_c1, closer_to_c0 = img < mid, img > mid
            elif c1 > c0:
                closer_to_c1, closer_to_c0 = img > mid, img < mid
            else:  # equal means: the data term is 0 everywhere, nothing grows or shrinks
                closer_to_c1 = closer_to_c0 = torch.zeros_like(dense)
        else:
            aux = lambda1 * (img - c1) ** 2 - lambda2 * (img - c0) ** 2
            closer_to_c1, closer_to_c0 = aux < 0, aux > 0
        grow, shrink = rows.pack(closer_to_c1.numpy()), rows.pack(closer_to_c0.numpy())
        active = _gradient_nonzero(rows, u)
        u = (active & grow) | (u & ~(active & shrink))
        for _ in range(smoothing):
            # skimage alternates SI∘IS and IS∘SI from one smoothing step to the next
            u = _sup_inf(rows, _inf_sup(rows, u)) if step % 2 == 0 else _inf_sup(rows, _sup_inf(rows, u))
            step += 1
    return rows.unpack(u)


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
