"""Stain normalisation: every tile re-coloured with one reference haematoxylin and eosin.

The tile's own stain matrix and per-pixel concentrations come from :func:`labelfree.transforms.stain.separate_stains`
(Vahadane); each stain's concentrations are scaled so that their 99th percentile matches a reference, and the pixels
are mixed back with the reference stain vectors (Macenko et al., ISBI 2009, whose reference matrix and maximum
concentrations MONAI's ``NormalizeHEStains`` also uses). A network fed normalised tiles sees the same colour for the
same amount of stain on every lab's slides. MONAI's transform is not used directly because it estimates the stains
again with Macenko's method (the project's separation is Vahadane's) and raises on tiles without tissue, where this one
returns the tile unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

from labelfree.core.imageio import as_rgb_uint8
from labelfree.transforms.stain import NoTissueError, separate_stains, tile_stain_concentrations

__all__ = [
    "REFERENCE_STAINS",
    "REFERENCE_MAX_CONCENTRATIONS",
    "normalise_stains",
    "StainNormalize",
    "StainNormalized",
    "StainNormalizeD",
    "StainNormalizeDict",
]

#: rows: haematoxylin and eosin optical density per unit concentration of the reference (Macenko 2009; MONAI's default)
REFERENCE_STAINS = np.array([[0.5626, 0.7201, 0.4062], [0.2159, 0.8012, 0.5581]])
#: the reference's 99th-percentile haematoxylin and eosin concentrations
REFERENCE_MAX_CONCENTRATIONS = np.array([1.9705, 1.0308])
#: a stain whose 99th percentile is below this is (almost) absent: it is not scaled up to the reference
_MIN_MAX_CONCENTRATION = 0.1


def normalise_stains(
    rgb: np.ndarray, percentile: float = 99.0, seed: int = 0, concentrations: np.ndarray | None = None
) -> np.ndarray:
    """Re-colour one tile with the reference stains.

    Args:
        rgb: ``(H, W, 3)`` uint8.
        percentile: the concentration percentile matched to the reference maximum.
        seed: pixel subsampling seed of the stain estimate.
        concentrations: ``(2, H, W)`` the tile's own concentrations (``separate_stains(rgb, seed=seed)``) when the
            caller has them already, so the tile is not separated twice; ``None`` separates it here.

    Returns:
        ``(H, W, 3)`` uint8; the tile itself when it has no stained tissue to estimate stains from.
    """
    if concentrations is None:
        try:
            concentrations = separate_stains(rgb, seed=seed).concentrations
        except NoTissueError:
            return rgb
    conc = np.asarray(concentrations).reshape(2, -1)
    top = np.maximum(np.percentile(conc, percentile, axis=1), _MIN_MAX_CONCENTRATION)
    od = (conc * (REFERENCE_MAX_CONCENTRATIONS / top)[:, None]).T @ REFERENCE_STAINS
    out = np.clip(np.rint(255.0 * np.exp(-od)), 0, 255).astype(np.uint8)
    return out.reshape(rgb.shape)


class StainNormalize(Transform):
    """Array transform: ``(3, H, W)`` RGB with values 0..255 → the same tile with the reference stains.

    Args:
        percentile: the concentration percentile matched to the reference maximum.
        seed: pixel subsampling seed of the stain estimate.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, percentile: float = 99.0, seed: int = 0):
        self.percentile, self.seed = percentile, seed

    def __call__(self, img: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """
        Args:
            img: ``(3, H, W)`` RGB, values 0..255 (uint8 or float).

        Returns:
            ``(3, H, W)``, the dtype and container type of ``img``.
        """
        rgb = as_rgb_uint8(img, channel_first=True)
        out = normalise_stains(rgb, self.percentile, self.seed).transpose(2, 0, 1)
        return convert_to_dst_type(np.ascontiguousarray(out), dst=img, dtype=getattr(img, "dtype", None))[0]


class StainNormalized(MapTransform):
    """Dictionary twin of :class:`StainNormalize`.

    Args:
        keys: RGB image keys (one key when ``concentrations_key`` is set).
        percentile, seed: as :class:`StainNormalize`.
        concentrations_key: where to keep the tile's own ``(2, H, W)`` float32 haematoxylin and eosin concentrations
            (before normalisation; ``labelfree.transforms.stain.tile_stain_concentrations``, the same values as
            ``MixtureFeatures("stains")``), so that a later step which needs them does not separate the tile again.
            ``None``: not kept.
    """

    backend = StainNormalize.backend

    def __init__(
        self,
        keys: KeysCollection,
        percentile: float = 99.0,
        seed: int = 0,
        concentrations_key: str | None = None,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        if concentrations_key is not None and len(self.keys) != 1:
            raise ValueError(f"concentrations_key needs exactly one image key, got {len(self.keys)}")
        self.op = StainNormalize(percentile, seed)
        self.concentrations_key = concentrations_key

    def __call__(self, data: Mapping[Hashable, np.ndarray | torch.Tensor]) -> dict[Hashable, np.ndarray | torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.concentrations_key is None:
                d[key] = self.op(d[key])
                continue
            img = d[key]
            rgb = as_rgb_uint8(img, channel_first=True)
            conc, separated = tile_stain_concentrations(rgb, self.op.seed)
            # a tile without stained tissue stays as it is, as in StainNormalize
            out = normalise_stains(rgb, self.op.percentile, concentrations=conc) if separated else rgb
            d[key] = convert_to_dst_type(
                np.ascontiguousarray(out.transpose(2, 0, 1)), dst=img, dtype=getattr(img, "dtype", None)
            )[0]
            d[self.concentrations_key] = convert_to_dst_type(
                conc, dst=img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32
            )[0]
        return d


StainNormalizeD = StainNormalizeDict = StainNormalized
