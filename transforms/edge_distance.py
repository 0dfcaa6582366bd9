"""Distance of every nucleus pixel to its own nucleus's edge: the target of SSimNet's optional distance output.

The instance step splits nuclei on a relief with one summit per nucleus. Computed from the foreground alone (the
distance to the background), two touching nuclei make one hill, and the watershed can only split it where the
probability dips. A network can instead learn, from instance maps, how far each pixel is from the edge of *its own*
nucleus, which falls to 0 on the line where two nuclei touch (as the distance maps HoVer-Net and StarDist learn). The
distance here is in pixels, so it reads as the relief it replaces and the marker depth keeps its meaning.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

from labelfree.core.distance import distance_to_background

from .soften import contact_lines

__all__ = [
    "DISTANCE_UNIT",
    "edge_distance",
    "EdgeDistance",
    "EdgeDistanced",
    "EdgeDistanceD",
    "EdgeDistanceDict",
    "DistanceOutputd",
    "DistanceOutputD",
    "DistanceOutputDict",
]

#: a network's distance output is in units of this many pixels (at the model's scale), so that its targets are of the
#: order of 1 like the other outputs' (a nucleus at 0.25 µm per pixel is about 8–12 px in radius); not tuned
DISTANCE_UNIT = 8.0


def edge_distance(inst: np.ndarray) -> np.ndarray:
    """Euclidean distance (pixels) from each nucleus pixel to the nearest pixel outside its own nucleus.

    The pixels on a contact line between two nuclei (:func:`labelfree.transforms.soften.contact_lines`) count as
    outside, so each nucleus's distance peaks at its own centre and touching nuclei are separated by zeros.

    Args:
        inst: ``(H, W)`` instance map, 0 = background.

    Returns:
        ``(H, W)`` float32, 0 on the background and on contact lines.
    """
    lab = np.asarray(inst)
    if lab.ndim != 2:
        raise ValueError(f"expected a 2D instance map, got shape {lab.shape}")
    inside = (lab > 0) & ~contact_lines(lab)
    if not inside.any():
        return np.zeros(lab.shape, np.float32)
    return distance_to_background(inside).astype(np.float32)


class EdgeDistance(Transform):
    """Array transform ``(1, H, W)`` instance map → ``(1, H, W)`` float32 distance to each nucleus's own edge; see
    :func:`edge_distance`."""

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __call__(self, inst: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """``(1, H, W)`` instance map → ``(1, H, W)`` float32, of the input's type (tensor in, tensor out)."""
        lab = np.asarray(inst.detach().cpu() if isinstance(inst, torch.Tensor) else inst)
        if lab.ndim != 3 or lab.shape[0] != 1:
            raise ValueError(f"expected a (1, H, W) instance map, got shape {lab.shape}")
        out = edge_distance(lab[0])[None]
        return convert_to_dst_type(out, dst=inst, dtype=out.dtype)[0]


class EdgeDistanced(MapTransform):
    """Dictionary twin of :class:`EdgeDistance`: writes ``output_key`` (default ``{key}_distance``)."""

    backend = EdgeDistance.backend

    def __init__(self, keys: KeysCollection, output_key: str | None = None, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.op = EdgeDistance()

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key or f"{key}_distance"] = self.op(d[key])
        return d


EdgeDistanceD = EdgeDistanceDict = EdgeDistanced


class DistanceOutputd(MapTransform):
    """Moves a network's distance output from ``keys`` to ``distance_key``, in pixels.

    A network trained with a distance output (SSimNet's ``distance_head``) returns ``(3, H, W)``: two class logits,
    then the distance to each nucleus's own edge in units of :data:`DISTANCE_UNIT` pixels. This leaves the class logits
    in ``keys`` (for the softmax that follows) and writes ``distance_key`` ``(1, H, W)`` in pixels (tensor in, tensor
    out). An output with ``n_classes`` channels or fewer passes unchanged and no ``distance_key`` is written.

    Args:
        keys: the network's output.
        distance_key: where the distance goes.
        n_classes: how many leading channels are class logits.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        keys: KeysCollection,
        distance_key: str = "distance",
        n_classes: int = 2,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.distance_key, self.n_classes = distance_key, n_classes

    def __call__(self, data: Mapping[Hashable, np.ndarray | torch.Tensor]) -> dict[Hashable, np.ndarray | torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            out = d[key]
            if out.shape[0] <= self.n_classes:
                continue
            if out.shape[0] != self.n_classes + 1:
                raise ValueError(f"expected {self.n_classes} class channels and one distance, got shape {out.shape}")
            d[self.distance_key] = out[self.n_classes :] * DISTANCE_UNIT
            d[key] = out[: self.n_classes]
        return d


DistanceOutputD = DistanceOutputDict = DistanceOutputd
