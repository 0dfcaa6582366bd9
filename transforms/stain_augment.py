"""Random stain jitter in haematoxylin–eosin–DAB space (Tellez et al., "Quantifying the effects of data augmentation
and stain color normalization ...", Medical Image Analysis 2019: "HED" augmentation).

The RGB tile is turned into optical density, unmixed into per-pixel stain concentrations with the fixed
Ruifrok–Johnston H, E and residual vectors, each concentration is scaled and shifted by a random amount, and the
result is mixed back. Unlike a hue rotation this moves colours the way a different lab's staining or scanner does:
a lighter or darker haematoxylin, a pinker eosin, with the background staying white. The jitter is drawn once per
image (all pixels move together), so the network learns nuclei that do not depend on one lab's stain strength.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data.meta_obj import get_track_meta
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor
from skimage.color import rgb_from_hed

from labelfree.transforms.shared_draw import SharedDrawd

__all__ = ["HED_FROM_RGB_STAINS", "RandHEDJitter", "RandHEDJitterd", "RandHEDJitterD", "RandHEDJitterDict"]

#: rows: haematoxylin, eosin, DAB optical density per unit concentration (Ruifrok & Johnston 2001), as scikit-image
#: ships them; the DAB row takes whatever the two stains do not explain
HED_FROM_RGB_STAINS = rgb_from_hed

_EPS = 1.0 / 255.0  # darkest representable value of an 8-bit tile: keeps log() finite


class RandHEDJitter(RandomizableTransform):
    """Random per-stain scale and shift of a ``(3, H, W)`` RGB image with values in [0, 1].

    Each stain concentration ``c`` becomes ``c · a + b`` with ``a ~ U(1 − scale, 1 + scale)`` and
    ``b ~ U(−shift, shift)`` (one draw per stain and per image); the output is clipped to [0, 1].

    Args:
        prob: probability of applying the transform.
        scale: half-width of the multiplicative jitter.
        shift: half-width of the additive jitter, in optical-density units.

    Returns (from ``__call__``):
        a float32 tensor of the input's shape (a MetaTensor if metadata is tracked).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, prob: float = 1.0, scale: float = 0.1, shift: float = 0.02):
        super().__init__(prob)
        if not 0.0 <= scale < 1.0 or shift < 0.0:
            raise ValueError(f"scale must be in [0, 1) and shift >= 0, got {scale}, {shift}")
        self.scale, self.shift = scale, shift
        self._a, self._b = np.ones(3), np.zeros(3)
        self._mix = torch.as_tensor(HED_FROM_RGB_STAINS, dtype=torch.float64)
        self._unmix = torch.linalg.inv(self._mix)

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        self._a = self.R.uniform(1.0 - self.scale, 1.0 + self.scale, size=3)
        self._b = self.R.uniform(-self.shift, self.shift, size=3)

    def __call__(self, img: np.ndarray | torch.Tensor, randomize: bool = True) -> torch.Tensor:
        x = convert_to_tensor(img, dtype=torch.float32, track_meta=get_track_meta())
        if x.ndim != 3 or x.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) RGB image, got shape {tuple(x.shape)}")
        if randomize:
            self.randomize()
        if not self._do_transform:
            return x
        raw = x.as_tensor() if hasattr(x, "as_tensor") else x
        od = -torch.log(raw.double().clamp(_EPS, 1.0)).reshape(3, -1)  # (3, N)
        conc = self._unmix.T @ od  # OD = mixᵀ · conc
        conc = conc * torch.as_tensor(self._a)[:, None] + torch.as_tensor(self._b)[:, None]
        rgb = torch.exp(-(self._mix.T @ conc)).clamp(0.0, 1.0).reshape(raw.shape).float()
        return convert_to_dst_type(rgb, dst=x)[0]


class RandHEDJitterd(SharedDrawd):
    """Dictionary twin of :class:`RandHEDJitter`; all keys get the same random draw."""

    backend = RandHEDJitter.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 1.0,
        scale: float = 0.1,
        shift: float = 0.02,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, RandHEDJitter(prob=1.0, scale=scale, shift=shift), prob, allow_missing_keys)


RandHEDJitterD = RandHEDJitterDict = RandHEDJitterd
