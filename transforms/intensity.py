"""DCGN preprocessing: per-image, per-channel min–max normalisation, and random hue / saturation in torch.

MONAI has no hue or saturation transform and torchvision is not available, so RGB↔HSV is written here. The
conversion is scale-invariant (hue and saturation do not depend on the intensity range), so the augmentation works on
0–255 or 0–1 images alike, as TensorFlow's ``random_hue``/``random_saturation`` that the DCGN code uses.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform, Transform
from monai.utils import TransformBackends
from monai.data.meta_obj import get_track_meta
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor

from labelfree.transforms.shared_draw import SharedDrawd

__all__ = [
    "rgb_to_hsv",
    "hsv_to_rgb",
    "MinMaxNormalize",
    "MinMaxNormalized",
    "MinMaxNormalizeD",
    "MinMaxNormalizeDict",
    "RandHueSaturation",
    "RandHueSaturationd",
    "RandHueSaturationD",
    "RandHueSaturationDict",
]


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """``(3, ...)`` non-negative RGB → ``(3, ...)`` HSV with hue in [0, 1), saturation in [0, 1], value = max(RGB)."""
    r, g, b = rgb[0], rgb[1], rgb[2]
    v, _ = rgb.max(dim=0)
    mn, _ = rgb.min(dim=0)
    delta = v - mn
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    safe = delta.clamp_min(1e-12)
    h = torch.where(v == r, ((g - b) / safe) % 6.0, torch.where(v == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h)) % 1.0
    return torch.stack([h, s, v])


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = hsv[0] % 1.0, hsv[1], hsv[2]
    k = lambda n: (n + h * 6.0) % 6.0  # noqa: E731 - the standard closed form f(n) = v - v s max(0, min(k, 4-k, 1))
    f = lambda n: v - v * s * torch.clamp(torch.minimum(k(n), 4.0 - k(n)), 0.0, 1.0)  # noqa: E731
    return torch.stack([f(5.0), f(3.0), f(1.0)])


class MinMaxNormalize(Transform):
    """Per-channel ``(x − min) / (max − min)`` over one image (DCGN eq. 11); a constant channel becomes 0.

    Input ``(C, H, W)``; output float32 tensor of the same shape in [0, 1].
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __call__(self, img: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = convert_to_tensor(img, dtype=torch.float32, track_meta=get_track_meta())
        if x.ndim < 2:
            raise ValueError(f"expected a channel-first image (C, H, W), got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("image contains NaN or infinite values")
        flat = x.reshape(x.shape[0], -1)
        lo = flat.min(dim=1).values.reshape(-1, *([1] * (x.ndim - 1)))
        hi = flat.max(dim=1).values.reshape(-1, *([1] * (x.ndim - 1)))
        return convert_to_dst_type((x - lo) / (hi - lo).clamp_min(1e-8), dst=x)[0]


class MinMaxNormalized(MapTransform):
    """Dictionary twin of :class:`MinMaxNormalize`."""

    backend = MinMaxNormalize.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.op = MinMaxNormalize()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d


class RandHueSaturation(RandomizableTransform):
    """Random hue shift and saturation scaling of a ``(3, H, W)`` RGB image (DCGN: hue ±0.12, saturation 0.5–1.5).

    Args:
        prob: probability of applying the transform.
        hue: the hue shift is drawn uniformly from ``[-hue, hue]`` (fraction of the colour circle).
        saturation: the saturation factor is drawn uniformly from this range; results are clipped to [0, 1].
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, prob: float = 1.0, hue: float = 0.12, saturation: tuple[float, float] = (0.5, 1.5)):
        super().__init__(prob)
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        if not 0.0 <= saturation[0] <= saturation[1]:
            raise ValueError(f"saturation must be an increasing non-negative range, got {saturation}")
        self.hue, self.saturation = hue, saturation
        self._shift, self._factor = 0.0, 1.0

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        self._shift = float(self.R.uniform(-self.hue, self.hue))
        self._factor = float(self.R.uniform(*self.saturation))

    def __call__(self, img: np.ndarray | torch.Tensor, randomize: bool = True) -> torch.Tensor:
        x = convert_to_tensor(img, dtype=torch.float32, track_meta=get_track_meta())
        if x.ndim != 3 or x.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) RGB image, got shape {tuple(x.shape)}")
        if randomize:
            self.randomize()
        if not self._do_transform:
            return x
        if (x < 0).any():
            raise ValueError("hue/saturation augmentation needs non-negative RGB values")
        hsv = rgb_to_hsv(x)
        hsv = torch.stack([(hsv[0] + self._shift) % 1.0, (hsv[1] * self._factor).clamp(0.0, 1.0), hsv[2]])
        return convert_to_dst_type(hsv_to_rgb(hsv.as_tensor() if hasattr(hsv, "as_tensor") else hsv), dst=x)[0]


class RandHueSaturationd(SharedDrawd):
    """Dictionary twin of :class:`RandHueSaturation`; all keys get the same random draw."""

    backend = RandHueSaturation.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 1.0,
        hue: float = 0.12,
        saturation: tuple[float, float] = (0.5, 1.5),
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, RandHueSaturation(prob=1.0, hue=hue, saturation=saturation), prob, allow_missing_keys)


MinMaxNormalizeD = MinMaxNormalizeDict = MinMaxNormalized
RandHueSaturationD = RandHueSaturationDict = RandHueSaturationd
