"""Physical scale: run a network at the microns per pixel it was trained at, whatever the input's.

A network trained on 40× tiles (0.25 µm per pixel) sees nuclei of a given size in pixels. A 20× tile (0.5 µm per
pixel) shows the same nuclei at half the size: they fall below its receptive field's sweet spot, and the instance
step's pixel parameters (smallest nucleus, marker depth) are twice too large for them. When the tile's resolution is
known (stated by the user, or read from a slide), the tile is resampled to the model's resolution, segmented there
with the model's own parameters, and the result resized back to the tile's pixel grid: the same thing the slide path
does level by level (:mod:`labelfree.engines.slides`).

Nothing here guesses a resolution from the image: without a stated one the tile is taken to be at the model's.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

__all__ = [
    "zoom_factor",
    "resample_rgb",
    "halve_labelled_tile",
    "double_labelled_tile",
    "ToModelScale",
    "ToModelScaled",
    "MatchSpatialSize",
    "MatchSpatialSized",
]


def zoom_factor(input_mpp: float | None, model_mpp: float, tolerance: float = 0.05) -> float:
    """Model pixels per input pixel, ``input_mpp / model_mpp``; 1 when the input's resolution is unknown (``None``)
    or within ``tolerance`` (relative) of the model's, so near-equal scanners are not resampled for nothing.

    Raises:
        ValueError: a resolution that is not a positive number.
    """
    if input_mpp is None:
        return 1.0
    if not (np.isfinite(input_mpp) and input_mpp > 0 and np.isfinite(model_mpp) and model_mpp > 0):
        raise ValueError(f"microns per pixel must be positive numbers, got input {input_mpp}, model {model_mpp}")
    f = float(input_mpp) / float(model_mpp)
    return 1.0 if abs(f - 1.0) <= tolerance else f


def resample_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h, w, 3)`` uint8 → ``size = (w, h)``, antialiased bilinear (the input itself when already that size)."""
    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    t = torch.from_numpy(np.require(rgb, requirements=["C", "W"])).permute(2, 0, 1)
    return _resize(t, (size[1], size[0]), nearest=False).permute(1, 2, 0).numpy()


def halve_labelled_tile(
    rgb: np.ndarray, inst: np.ndarray, ignore: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tile and its instance labels as a scan at half the magnification would show them.

    A network trained only on 40× tiles has rarely seen small nuclei touching at its own input scale; a copy of a 40×
    tile at half the size shows the same nuclei, with the same splits, as a 20× scan does. The tile is cropped to even
    sides and resampled as the bundle resamples a tile of known resolution (antialiased bilinear,
    :func:`resample_rgb`), the instances by nearest neighbour, and a pixel of the half tile is ignored when any of its
    2 × 2 block was, so nothing the loss left out comes back.

    Args:
        rgb: ``(H, W, 3)`` uint8 tile.
        inst: ``(H, W)`` int instance map (0 = background).
        ignore: ``(H, W)`` bool, pixels left out of the loss.

    Returns:
        ``(rgb, inst, ignore)`` at ``(H // 2, W // 2)``: uint8, the instance map's dtype (ids kept, an object too small
        to survive the halving is gone), bool.
    """
    _check_labelled_tile(rgb, inst, ignore)
    h, w = inst.shape[0] // 2, inst.shape[1] // 2
    if h == 0 or w == 0:
        raise ValueError(f"a tile of {inst.shape} has no half")
    rgb, inst, ignore = rgb[: 2 * h, : 2 * w], inst[: 2 * h, : 2 * w], ignore[: 2 * h, : 2 * w]
    half_rgb = resample_rgb(np.ascontiguousarray(rgb), (w, h))
    ids = torch.from_numpy(np.ascontiguousarray(inst).astype(np.int64))[None]
    half_inst = _resize(ids, (h, w), nearest=True)[0].numpy().astype(inst.dtype)
    half_ignore = np.asarray(ignore, dtype=bool).reshape(h, 2, w, 2).any(axis=(1, 3))
    return half_rgb, half_inst, half_ignore


def double_labelled_tile(
    rgb: np.ndarray, inst: np.ndarray, ignore: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tile and its instance labels as a scan at twice the magnification would show them: the counterpart of
    :func:`halve_labelled_tile` for large nuclei.

    A network trained only on 40× tiles has rarely seen a nucleus of four times the usual area whole at its own input
    scale, and cuts large pale nuclei into pieces; a copy of a 40× tile at twice the size shows the same nuclei, with
    the same splits, at that size. The tile is resampled as the bundle resamples a tile of known resolution
    (bilinear, :func:`resample_rgb`); each label pixel and each ignored pixel becomes a 2 × 2 block.

    Args:
        rgb: ``(H, W, 3)`` uint8 tile.
        inst: ``(H, W)`` int instance map (0 = background).
        ignore: ``(H, W)`` bool, pixels left out of the loss.

    Returns:
        ``(rgb, inst, ignore)`` at ``(2H, 2W)``: uint8, the instance map's dtype (ids kept), bool.
    """
    _check_labelled_tile(rgb, inst, ignore)
    h, w = inst.shape

    def blocks(a: np.ndarray) -> np.ndarray:  # each pixel a 2 × 2 block: nearest neighbour, exactly
        return np.asarray(a).repeat(2, axis=0).repeat(2, axis=1)

    return resample_rgb(rgb, (2 * w, 2 * h)), blocks(inst), blocks(np.asarray(ignore, dtype=bool))


def _check_labelled_tile(rgb: np.ndarray, inst: np.ndarray, ignore: np.ndarray) -> None:
    if rgb.shape[:2] != inst.shape or inst.shape != ignore.shape:
        raise ValueError(f"tile {rgb.shape[:2]}, instances {inst.shape} and ignore {ignore.shape} differ in size")


def _resize(img: torch.Tensor, shape: Sequence[int], nearest: bool) -> torch.Tensor:
    """``(C, H, W)`` → ``(C, *shape)``; integer images stay integer (rounded and clamped to their range)."""
    x = img[None].float()
    if nearest:
        out = torch.nn.functional.interpolate(x, size=tuple(shape), mode="nearest-exact")
    else:
        out = torch.nn.functional.interpolate(x, size=tuple(shape), mode="bilinear", antialias=True)
    out = out[0]
    if not img.is_floating_point():
        info = torch.iinfo(img.dtype)
        out = out.round().clamp(info.min, info.max)
    return out.to(img.dtype)


class ToModelScale(Transform):
    """Array transform: resample a ``(C, H, W)`` image from ``input_mpp`` to ``model_mpp`` microns per pixel.

    Antialiased bilinear; a uint8 tile stays uint8 (the dtype says how the image is scaled, see
    :func:`labelfree.transforms.io.tensor_to_rgb`), a ``MetaTensor`` keeps its metadata (the file name). A no-op when
    :func:`zoom_factor` is 1.

    Args:
        input_mpp: microns per pixel of the input (``None``: taken to be the model's).
        model_mpp: microns per pixel the model was trained at (MoNuSeg at 40×: 0.25).
        tolerance: relative difference of resolution accepted without resampling.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, input_mpp: float | None = None, model_mpp: float = 0.25, tolerance: float = 0.05):
        self.factor = zoom_factor(input_mpp, model_mpp, tolerance)

    def __call__(self, img: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """
        Args:
            img: ``(C, H, W)``.

        Returns:
            ``(C, round(H·f), round(W·f))`` of the input's type and dtype, ``f`` = :func:`zoom_factor`.
        """
        if img.ndim != 3:
            raise ValueError(f"expected a (C, H, W) image, got shape {tuple(img.shape)}")
        if self.factor == 1.0:
            return img
        t = torch.as_tensor(img.as_tensor() if isinstance(img, MetaTensor) else img)
        shape = [max(1, int(round(s * self.factor))) for s in t.shape[1:]]
        out = _resize(t, shape, nearest=False)
        if isinstance(img, MetaTensor):
            return MetaTensor(out, meta=dict(img.meta))
        return convert_to_dst_type(out, dst=img)[0]


class ToModelScaled(MapTransform):
    """Dictionary twin of :class:`ToModelScale`.

    Args:
        keys: images to resample (the network input; keep a copy of the tile at its own size for the outputs).
        input_mpp, model_mpp, tolerance: see :class:`ToModelScale`.
    """

    backend = ToModelScale.backend

    def __init__(
        self,
        keys: KeysCollection,
        input_mpp: float | None = None,
        model_mpp: float = 0.25,
        tolerance: float = 0.05,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.op = ToModelScale(input_mpp, model_mpp, tolerance)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d


class MatchSpatialSize(Transform):
    """Array transform: resize a ``(C, H, W)`` label map to a given ``(H, W)`` by nearest neighbour (ids and masks stay
    ids and masks). A no-op when it already has that size.

    Args:
        spatial_size: the target ``(H, W)``.
        relabel: renumber the ids ``1..n`` afterwards (an instance map: shrinking can lose a small object's every
            pixel, and an id map should have no gaps).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, spatial_size: Sequence[int], relabel: bool = False):
        self.spatial_size = tuple(int(s) for s in spatial_size)
        self.relabel = relabel

    def __call__(self, img: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """
        Args:
            img: ``(C, H, W)`` label map.

        Returns:
            ``(C, *spatial_size)`` of the input's type and dtype.
        """
        if img.ndim != 3:
            raise ValueError(f"expected a (C, H, W) map, got shape {tuple(img.shape)}")
        if tuple(img.shape[1:]) == self.spatial_size:
            return img
        t = torch.as_tensor(np.asarray(img) if isinstance(img, np.ndarray) else img)
        out = _resize(t, self.spatial_size, nearest=True)
        if self.relabel:
            ids, inverse = torch.unique(out, return_inverse=True)  # ids sorted: background 0 first when present
            out = (inverse + int(ids[0] != 0)).to(out.dtype)
        return convert_to_dst_type(out, dst=img)[0]


class MatchSpatialSized(MapTransform):
    """Dictionary twin of :class:`MatchSpatialSize`: resizes ``keys`` to the spatial size of ``ref_key`` (the tile at
    its own size), undoing :class:`ToModelScaled` on the outputs.

    Args:
        keys: label maps to resize (instance map, mask).
        ref_key: the item whose ``(C, H, W)`` shape gives the target ``(H, W)``.
        relabel: see :class:`MatchSpatialSize` (for instance maps; not for a 0/255 mask).
    """

    backend = MatchSpatialSize.backend

    def __init__(
        self, keys: KeysCollection, ref_key: str = "tile", relabel: bool = False, allow_missing_keys: bool = False
    ):
        super().__init__(keys, allow_missing_keys)
        self.ref_key, self.relabel = ref_key, relabel

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        op = MatchSpatialSize(tuple(d[self.ref_key].shape[-2:]), self.relabel)
        for key in self.key_iterator(d):
            d[key] = op(d[key])
        return d
