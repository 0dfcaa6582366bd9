"""What a colour mixture (DCGN) is fitted on: per-pixel features of an H&E tile.

DCGN reads its network's softmax as the posterior of a Gaussian mixture over per-pixel features. The paper fits the
mixture on per-image min–max RGB, where two or three Gaussians split glass and pale stroma from everything stained
rather than nuclei from the rest. Beer–Lambert optical density makes stain amounts additive, and the Vahadane stain
concentrations put haematoxylin on an axis of its own, so a "nucleus" component is a Gaussian that the mixture can find.

Kinds (all ``(C, H, W)`` float32):

- ``"rgb"``: per-channel min–max RGB in [0, 1] (the paper; ``C = 3``).
- ``"od"``: optical density ``-ln(I / 255)`` per channel (``C = 3``).
- ``"stains"``: haematoxylin and eosin concentrations of the tile's own Vahadane stain matrix (``C = 2``; a tile without
  stained tissue falls back to the Ruifrok–Johnston matrix, so it still gets features).
- ``"stains_blob"``: those two and the haematoxylin's excess over its own Gaussian blur (``BLOB_SIGMA`` pixels;
  ``C = 3``): a nucleus is richer in haematoxylin than what surrounds it, diffuse purple cytoplasm is not.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from scipy import ndimage as ndi
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

from labelfree.core.imageio import as_rgb_uint8
from labelfree.transforms.stain import optical_density, tile_stain_concentrations

__all__ = [
    "BLOB_SIGMA",
    "FEATURE_KINDS",
    "feature_channels",
    "mixture_features",
    "with_blob_excess",
    "MixtureFeatures",
    "MixtureFeaturesd",
]

#: feature kind → number of channels
FEATURE_KINDS = {"rgb": 3, "od": 3, "stains": 2, "stains_blob": 3}
#: Gaussian scale (pixels) of the blur that ``"stains_blob"``'s excess is taken over: about twice a 40x nucleus's radius
#: (set with its rule, ``bench/results/dcgn_blob_feature/rule.txt``, not fitted)
BLOB_SIGMA = 16.0


def feature_channels(kind: str) -> int:
    """Number of feature channels of ``kind`` (raises ``ValueError`` for an unknown kind)."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown mixture feature kind {kind!r}; use one of {sorted(FEATURE_KINDS)}")
    return FEATURE_KINDS[kind]


def mixture_features(rgb: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """Per-pixel mixture features of one tile.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB.
        kind: ``"rgb"``, ``"od"``, ``"stains"`` or ``"stains_blob"`` (see the module docstring).
        seed: pixel subsampling seed of the stain estimate (the stain kinds only).

    Returns:
        ``(C, H, W)`` float32 with ``C = feature_channels(kind)``.
    """
    feature_channels(kind)
    if kind == "rgb":
        x = rgb.astype(np.float32)
        lo, hi = x.min(axis=(0, 1)), x.max(axis=(0, 1))
        x = (x - lo) / np.maximum(hi - lo, 1e-8)
        return np.ascontiguousarray(x.transpose(2, 0, 1))
    if kind == "od":
        return np.ascontiguousarray(optical_density(rgb).transpose(2, 0, 1))
    stains = tile_stain_concentrations(rgb, seed)[0]
    return stains if kind == "stains" else with_blob_excess(stains)


def with_blob_excess(stains: np.ndarray, sigma: float = BLOB_SIGMA) -> np.ndarray:
    """``(2, H, W)`` haematoxylin and eosin → ``(3, H, W)`` float32: the two and the haematoxylin's excess over its
    Gaussian blur of ``sigma`` pixels (reflected at the tile's edge)."""
    h = np.asarray(stains[0], dtype=np.float32)
    excess = h - ndi.gaussian_filter(h, sigma, mode="reflect")
    return np.ascontiguousarray(np.concatenate([np.asarray(stains, np.float32), excess[None]], axis=0))


class MixtureFeatures(Transform):
    """Array transform: ``(3, H, W)`` RGB (uint8 values, any dtype) → ``(C, H, W)`` float32 mixture features.

    Args:
        kind: one of ``FEATURE_KINDS`` (see the module docstring).
        seed: pixel subsampling seed of the stain estimate.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, kind: str = "stains", seed: int = 0):
        feature_channels(kind)
        self.kind, self.seed = kind, seed

    def __call__(self, img: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """
        Args:
            img: ``(3, H, W)`` RGB with values in 0..255.

        Returns:
            ``(C, H, W)`` float32, the same container type as ``img``.
        """
        rgb = as_rgb_uint8(img, channel_first=True)
        out = mixture_features(rgb, self.kind, self.seed)
        return convert_to_dst_type(out, dst=img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32)[
            0
        ]


class MixtureFeaturesd(MapTransform):
    """Dictionary twin of :class:`MixtureFeatures`: writes the features of ``keys`` under ``output_keys``.

    Args:
        keys: RGB image keys.
        output_keys: where the features go, one per key (default ``"<key>_features"``).
        kind, seed: as :class:`MixtureFeatures`.
    """

    backend = MixtureFeatures.backend

    def __init__(
        self,
        keys: KeysCollection,
        output_keys: KeysCollection | None = None,
        kind: str = "stains",
        seed: int = 0,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        names = [f"{k}_features" for k in self.keys] if output_keys is None else list(np.atleast_1d(output_keys))
        if len(names) != len(self.keys):
            raise ValueError(f"need one output key per key, got {len(names)} for {len(self.keys)}")
        self.output_keys = names
        self.op = MixtureFeatures(kind, seed)

    def __call__(self, data: Mapping[Hashable, np.ndarray | torch.Tensor]) -> dict[Hashable, np.ndarray | torch.Tensor]:
        d = dict(data)
        for key, out in self.key_iterator(d, self.output_keys):
            d[out] = self.op(d[key])
        return d


MixtureFeaturesD = MixtureFeaturesDict = MixtureFeaturesd
