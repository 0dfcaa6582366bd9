"""Separation weight map of an instance map (Ronneberger et al., U-Net, MICCAI 2015, eq. 2).

A loss that counts every pixel alike spends almost all of its weight on open background and nucleus interiors; the few
pixels of the gap between two touching nuclei, which decide whether they come out as one object or two, hardly count.
The U-Net paper weights each background pixel by how close it lies to two objects at once,
``w = 1 + w0 · exp(−(d1 + d2)² / (2 σ²))``, ``d1`` and ``d2`` the distances to the nearest and the second-nearest
object. Here the pixels of a contact line between two touching nuclei
(:func:`labelfree.transforms.soften.contact_lines`, which self-training's targets mark as background) weigh the same
way, so the line itself is the heaviest. Weighting the background alone pulls every rim next to a neighbour inward (a
self-training round then teaches the smaller masks to the next); ``on_nuclei`` weights the nucleus pixels by the same
rule too (``d1 = 0``, their own nucleus), so both sides of a gap count alike.

Each object's distance is computed in its own window, ``3σ`` beyond its bounding box: a pixel farther than that from
its second object gets no separation weight, where the formula would give at most ``w0 · e^{−4.5}`` (0.11 at
``w0 = 10``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type
from scipy import ndimage as ndi

from .soften import contact_lines

__all__ = [
    "border_weight",
    "BorderWeight",
    "BorderWeightd",
    "BorderWeightD",
    "BorderWeightDict",
]


def border_weight(inst: np.ndarray, w0: float = 10.0, sigma: float = 5.0, on_nuclei: bool = False) -> np.ndarray:
    """Per-pixel loss weight: ``1 + w0 · exp(−(d1 + d2)² / (2 σ²))`` on the background and the contact lines
    between touching nuclei, 1 on the other nucleus pixels (or the same rule there too, with ``on_nuclei``).

    Args:
        inst: ``(H, W)`` instance map, 0 = background.
        w0: the separation weight's height (10 in the U-Net paper).
        sigma: its reach in pixels (5 in the U-Net paper).
        on_nuclei: weight the nucleus pixels by their distance to the nearest other nucleus too.

    Returns:
        ``(H, W)`` float32, at least 1.
    """
    lab = np.asarray(inst)
    if lab.ndim != 2:
        raise ValueError(f"expected a 2D instance map, got shape {lab.shape}")
    if w0 < 0 or sigma <= 0:
        raise ValueError(f"expected w0 >= 0 and sigma > 0, got {w0} and {sigma}")
    out = np.ones(lab.shape, np.float32)
    if w0 == 0 or lab.size == 0 or int(lab.max()) <= 0:
        return out
    lab = lab.astype(np.int64, copy=False)
    reach = int(np.ceil(3 * sigma))
    h, w = lab.shape
    d1 = np.full(lab.shape, np.inf, np.float32)  # distance to the nearest object
    d2 = np.full(lab.shape, np.inf, np.float32)  # ... and to the second-nearest
    for i, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:
            continue
        win = (
            slice(max(box[0].start - reach, 0), min(box[0].stop + reach, h)),
            slice(max(box[1].start - reach, 0), min(box[1].stop + reach, w)),
        )
        # the whole object lies in its window, so the window's transform is its exact distance there
        d = ndi.distance_transform_edt(lab[win] != i).astype(np.float32)
        a, b = d1[win], d2[win]
        np.minimum(b, np.maximum(a, d), out=b)
        np.minimum(a, d, out=a)
    two = np.isfinite(d2)
    if not on_nuclei:
        two &= (lab == 0) | contact_lines(lab)
    s = d1[two] + d2[two]
    out[two] += np.float32(w0) * np.exp(-(s * s) / np.float32(2 * sigma * sigma))
    return out


class BorderWeight(Transform):
    """Array transform ``(1, H, W)`` instance map → ``(1, H, W)`` float32 loss weight; see :func:`border_weight`.

    Args:
        w0: the separation weight's height.
        sigma: its reach in pixels.
        on_nuclei: weight the nucleus pixels too.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, w0: float = 10.0, sigma: float = 5.0, on_nuclei: bool = False):
        self.w0, self.sigma, self.on_nuclei = w0, sigma, on_nuclei

    def __call__(self, inst: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """``(1, H, W)`` instance map → ``(1, H, W)`` float32, of the input's type (tensor in, tensor out)."""
        lab = np.asarray(inst.detach().cpu() if isinstance(inst, torch.Tensor) else inst)
        if lab.ndim != 3 or lab.shape[0] != 1:
            raise ValueError(f"expected a (1, H, W) instance map, got shape {lab.shape}")
        out = border_weight(lab[0], self.w0, self.sigma, self.on_nuclei)[None]
        return convert_to_dst_type(out, dst=inst, dtype=out.dtype)[0]


class BorderWeightd(MapTransform):
    """Dictionary twin of :class:`BorderWeight`: writes ``output_key`` (default ``{key}_weight``)."""

    backend = BorderWeight.backend

    def __init__(
        self,
        keys: KeysCollection,
        output_key: str | None = None,
        w0: float = 10.0,
        sigma: float = 5.0,
        on_nuclei: bool = False,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.op = BorderWeight(w0, sigma, on_nuclei)

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key or f"{key}_weight"] = self.op(d[key])
        return d


BorderWeightD = BorderWeightDict = BorderWeightd
