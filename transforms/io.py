"""Dictionary transforms that load tiles and label maps with validation, and save the output contract (files in, files
out; post-processing is in ``labelfree.transforms.instances``, scoring in ``labelfree.transforms.scoring``).

These are what the bundles' ``preprocessing`` and ``postprocessing`` use in place of ``LoadImaged``/``SaveImaged``:
the input is checked (grey, RGBA, 16-bit, tiny and corrupt tiles get a clear error, see ``labelfree.core.imageio``), the
layout is ``(C, H, W)`` — not MONAI's PIL ``(C, W, H)`` — and the output files are written atomically.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import TransformBackends

from labelfree.core.imageio import load_instance_map, load_rgb
from labelfree.core.writer import write_segmentation

__all__ = [
    "tensor_to_rgb",
    "source_name",
    "rgb_metatensor",
    "LoadRGBd",
    "LoadInstanceMapd",
    "SaveSegmentationd",
]


def tensor_to_rgb(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(3, H, W)`` RGB → ``(H, W, 3)`` uint8.

    The scale follows the dtype, never the values: uint8 is taken as it is (the validated tile, which the bundles
    keep as ``"tile"``), a floating tensor is the network input in [0, 1] and is multiplied by 255 (exact for the
    bundles' ``ScaleIntensityRanged`` 0–255 → 0–1). Guessing from the values would read a near-black uint8 tile whose
    maximum is 1 as [0, 1] data.
    """
    t = torch.as_tensor(img).detach().cpu()
    if t.dtype == torch.uint8:
        return np.ascontiguousarray(t.numpy().transpose(1, 2, 0))
    if not t.is_floating_point():
        raise TypeError(f"expected a uint8 tile or a float tensor in [0, 1], got {t.dtype}")
    return (t.float() * 255.0).round().clamp(0, 255).byte().numpy().transpose(1, 2, 0)


def source_name(x: object) -> str:
    meta = getattr(x, "meta", None) or {}
    name = meta.get("filename_or_obj")
    if isinstance(name, (list, tuple)):
        name = name[0]
    if not name:
        raise ValueError("the image carries no file name (load it with LoadRGBd)")
    return str(name)


def rgb_metatensor(rgb: np.ndarray, name: str) -> MetaTensor:
    """``(H, W, 3)`` uint8 → the ``(3, H, W)`` ``MetaTensor`` the bundles expect, ``filename_or_obj`` = ``name``."""
    return MetaTensor(
        torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))),
        meta={"filename_or_obj": name, "spatial_shape": rgb.shape[:2]},
    )


class LoadRGBd(MapTransform):
    """Load an RGB tile from a path as a ``(3, H, W)`` uint8 ``MetaTensor`` with ``filename_or_obj`` in its meta."""

    backend = [TransformBackends.TORCH]

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = Path(str(d[key]))
            d[key] = rgb_metatensor(load_rgb(path), str(path))
        return d


class LoadInstanceMapd(MapTransform):
    """Load an instance label map (uint16 PNG/TIFF) from a path as a ``(1, H, W)`` int64 tensor."""

    backend = [TransformBackends.TORCH]

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = torch.from_numpy(load_instance_map(Path(str(d[key]))))[None]
        return d


class SaveSegmentationd(MapTransform):
    """Write ``<stem>_inst.tif``, ``<stem>_seg.png`` and ``<stem>_overlay.png`` flat in ``output_dir``.

    Args:
        keys: the instance map key.
        output_dir: output folder (created if missing).
        image_key: the tile (its meta gives the stem; uint8, or the [0, 1] network input; see ``tensor_to_rgb``).
        seg_key: optional segmentation to save as ``_seg.png`` (default: 255 where an instance is).
        text_key: optional key of a ``dict[str, str]`` stored as PNG text metadata of ``_seg.png``.
        extra_keys: keys of more ``(H, W[, 3])`` uint8 images, each saved as ``<stem>_<key>.png`` with the others.
        overlay_key: optional key of an ``(H, W, 3)`` uint8 image saved as ``_overlay.png`` instead of the contours.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str,
        image_key: str = "image",
        seg_key: str | None = None,
        text_key: str | None = None,
        extra_keys: Sequence[str] = (),
        overlay_key: str | None = None,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.output_dir, self.image_key, self.seg_key, self.text_key = output_dir, image_key, seg_key, text_key
        self.extra_keys, self.overlay_key = list(extra_keys), overlay_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        image = d[self.image_key]
        stem = Path(source_name(image)).stem
        rgb = tensor_to_rgb(image)
        for key in self.key_iterator(d):
            inst = np.asarray(torch.as_tensor(d[key]).detach().cpu())
            seg = None if self.seg_key is None else np.asarray(torch.as_tensor(d[self.seg_key]).cpu())
            text = None if self.text_key is None else d.get(self.text_key)
            extra = {k: np.asarray(d[k]) for k in self.extra_keys}
            overlay = None if self.overlay_key is None else np.asarray(d[self.overlay_key])
            write_segmentation(self.output_dir, stem, rgb, inst, seg, seg_text=text, extra=extra, overlay=overlay)
        return d
