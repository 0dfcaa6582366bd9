"""Transforms between MONAI Label requests and the bundles: reading the requested tile, and instance contours.

MONAI Label's own ``FindContoursd`` traces each *class* of a label map, so touching nuclei would come back as one
polygon, and it expects MONAI's ``(W, H)`` PIL layout. Our bundles give an instance map in ``(H, W)``; one polygon
per instance keeps touching nuclei apart in QuPath, ASAP and DSA.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import TransformBackends

from labelfree.core.imageio import as_rgb_uint8, load_rgb
from labelfree.transforms.io import rgb_metatensor
from labelfree.transforms.slide_tiles import aligned_span, core_instance_ids
from labelfree.transforms.wsi_reader import SlideError, open_slide
from labelfree.transforms.slide_tiles import instance_polygons as slide_polygons

__all__ = ["LoadTiled", "InstanceContoursd", "instance_polygons", "image_side", "SLIDE_SUFFIXES"]

#: suffixes MONAI Label hands to OpenSlide (``monailabel.utils.others.generic.is_openslide_supported``)
SLIDE_SUFFIXES = (".bif", ".mrxs", ".ndpi", ".scn", ".svs", ".svslide", ".tif", ".tiff", ".vms", ".vmu")


def image_side(path: str | Path) -> int | None:
    """Longest side in pixels from the file header, without decoding; ``None`` if no reader knows the file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return max(im.size)
    except Exception:  # noqa: BLE001 - PIL raises many types (including its decompression-bomb guard)
        pass
    try:
        import openslide

        with openslide.OpenSlide(str(path)) as slide:
            return max(slide.dimensions)
    except Exception:  # noqa: BLE001 - openslide missing, or the file unreadable
        return None


def _read_region(path: Path, location, size, level: int, margin: int = 0, window: tuple[int, int] | None = None):
    """The requested region of a slide as ``(H, W, 3)`` uint8 on white, the level's downsample, and the core: the
    requested part inside what was read, ``(x0, y0, x1, y1)`` in pixels of the read level. With ``margin``, that many
    pixels of context are read around the region (clipped to the slide), so nuclei on the tile's edge are whole;
    ``None`` when OpenSlide is missing or cannot open the file (a plain TIFF tile, for example). Read through the
    slide command's reader (:func:`labelfree.transforms.wsi_reader.open_slide`, MONAI's OpenSlide backend)."""
    try:
        slide = open_slide(path, backend="openslide")
    except SlideError:
        return None
    with slide:
        level = min(max(int(level), 0), len(slide.sizes) - 1)
        down = slide.downsamples[level]
        lw, lh = slide.sizes[level]
        x, y = (int(v) for v in location)
        w = min(int(size[0]), lw - int(x / down)) if size and size[0] else lw
        h = min(int(size[1]), lh - int(y / down)) if size and size[1] else lh
        if w <= 0 or h <= 0:
            raise ValueError(f"region {location} + {size} lies outside {path.name} ({lw}×{lh} at level {level})")
        lx, ly = int(x / down), int(y / down)  # the region's origin in level pixels
        if margin:  # context on the network's window grid, as the slide command's tiles
            rx0, rx1 = aligned_span(lx, lx + w, margin, lw, *(window or (None, None)))
            ry0, ry1 = aligned_span(ly, ly + h, margin, lh, *(window or (None, None)))
        else:
            rx0, ry0, rx1, ry1 = lx, ly, lx + w, ly + h
        rgb = slide.read(level, rx0, ry0, rx1 - rx0, ry1 - ry0)  # transparent (unscanned) pixels come back as glass
    origin = (int(round(rx0 * down)), int(round(ry0 * down)))
    core = (lx - rx0, ly - ry0, lx - rx0 + w, ly - ry0 + h)
    return rgb, down, origin, core


class LoadTiled(MapTransform):
    """Read the tile a MONAI Label request names as a ``(3, H, W)`` uint8 ``MetaTensor``.

    ``data[key]`` is a path or an in-memory ``(H, W, 3)`` / ``(3, H, W)`` array. For a slide OpenSlide can open, the
    region ``data["location"]`` (level-0 pixels), ``data["size"]`` (pixels at ``data["level"]``) is read, as MONAI
    Label's WSI tiling asks; any other file is read whole with the project's validating reader, so a grey, 16-bit or
    corrupt file fails with a clear message. ``data["downsample"]`` records the level's scale for the contours.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self, keys: KeysCollection, window: tuple[int, int] | None = None, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.window = window

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            src, down, name = d[key], 1.0, "image"
            if isinstance(src, (np.ndarray, torch.Tensor)):
                rgb = as_rgb_uint8(src)
            else:
                path = Path(str(src))
                name = str(path)
                region = None
                if path.suffix.lower() in SLIDE_SUFFIXES:
                    margin = int(d.get("tile_margin") or 0)
                    loc, level = d.get("location") or (0, 0), d.get("level") or 0
                    region = _read_region(path, loc, d.get("size"), level, margin, self.window)
                if region is None:
                    rgb = load_rgb(path)
                else:
                    rgb, down = as_rgb_uint8(region[0], channel_first=False, name=path.name), region[1]
                    if region[3] != (0, 0, rgb.shape[1], rgb.shape[0]):
                        d["location"], d["core"] = list(region[2]), region[3]
            d[key] = rgb_metatensor(rgb, name)
            d["downsample"] = down
        return d


def instance_polygons(instances: np.ndarray, min_area: float = 0.0, tolerance: float = 0.5) -> list[list[list[float]]]:
    """One closed outline per instance as ``[[x, y], ...]`` in pixel-edge coordinates of ``instances`` (the slide
    command's own outlines: :func:`labelfree.transforms.slide_tiles.instance_polygons`).

    Args:
        instances: ``(H, W)`` integer map, 0 = background.
        min_area: instances with fewer pixels are left out.
        tolerance: Douglas-Peucker tolerance in pixels (0: exact pixel outlines).
    """
    return [p.round(2).tolist() for _, p in slide_polygons(instances, min_area=min_area, tolerance=tolerance)]


class InstanceContoursd(MapTransform):
    """Instance map → MONAI Label's pathology annotation (what ``PolygonWriter`` turns into ASAP XML or DSA JSON).

    Writes ``data[result][result_output_key] = {"location", "size", "elements": [{"label", "contours"}], "labels"}``
    with coordinates in level-0 slide pixels: scaled by ``data["downsample"]`` and offset by ``data["location"]``.

    Args:
        keys: the ``(1, H, W)`` or ``(H, W)`` instance map(s).
        label: the annotation class name.
        color: its RGB colour in the viewers.
        min_poly_area: the request's ``min_poly_area`` when given, else this (pixels at the read level).
    """

    def __init__(
        self,
        keys: KeysCollection,
        label: str = "Nuclei",
        color: tuple[int, int, int] = (0, 255, 0),
        min_poly_area: float = 30,
        result: str = "result",
        result_output_key: str = "annotation",
    ) -> None:
        super().__init__(keys)
        self.label, self.color, self.min_poly_area = label, color, min_poly_area
        self.result, self.result_output_key = result, result_output_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        location = [int(v) for v in (d.get("location") or (0, 0))]
        down = float(d.get("downsample", 1.0))
        min_area = float(d.get("min_poly_area", self.min_poly_area))
        for key in self.key_iterator(d):
            inst = np.asarray(d[key].detach().cpu() if isinstance(d[key], torch.Tensor) else d[key])
            inst = inst.reshape(inst.shape[-2:]).astype(np.int64)
            size = [int(inst.shape[1] * down), int(inst.shape[0] * down)]
            origin = location
            if d.get("core") is not None:  # a tile read with context: only the nuclei whose centroid is in its core
                x0, y0, x1, y1 = d["core"]
                inst = np.where(np.isin(inst, core_instance_ids(inst, (x0, y0, x1, y1))), inst, 0)
                origin = [int(location[0] + x0 * down), int(location[1] + y0 * down)]
                size = [int((x1 - x0) * down), int((y1 - y0) * down)]
            polys = instance_polygons(inst, min_area=min_area)
            contours = [[[location[0] + x * down, location[1] + y * down] for x, y in p] for p in polys]
            d.setdefault(self.result, {})
            d[self.result][self.result_output_key] = {
                "location": origin,
                "size": size,
                "elements": [{"label": self.label, "contours": contours}] if contours else [],
                "labels": {self.label: list(self.color)},
            }
            d[self.result]["nuclei"] = len(contours)
        return d
