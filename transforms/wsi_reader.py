"""Whole-slide reading with flat memory: MONAI's ``WSIReader`` backends, a pyramid level chosen by physical resolution.

MONAI's ``TiffFileWSIReader`` decodes the *whole* pyramid level for every patch it returns (``page.asarray``) and
counts levels as TIFF pages, so an OME-TIFF or SubIFD pyramid looks like one level and a 40k² slide needs 4.8 GB per
read. :class:`TiledTiffWSIReader` keeps MONAI's interface (``get_data``, ``get_mpp``, ...) and reads only the TIFF tiles
or strips a region overlaps, from the levels tifffile finds in the first series (SVS, OME-TIFF, generic pyramids).
OpenSlide (``openslide-bin``: SVS, NDPI, MRXS, SCN, generic tiled TIFF, ...) goes through MONAI's own
``OpenSlideWSIReader``, which already reads regions lazily, and cuCIM, where it is installed, through MONAI's
``CuCIMWSIReader`` (not exercised here: no cuCIM build for this machine; the dispatch is tested with a stand-in).

Coordinates: ``(x, y)`` for locations and ``(w, h)`` for sizes in this module's own API, as slide viewers and
OpenSlide write them; MONAI's ``get_data`` takes ``(y, x)`` / ``(h, w)`` and the conversion happens once, in
:meth:`Slide.read`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from monai.data.wsi_reader import BaseWSIReader, CuCIMWSIReader, OpenSlideWSIReader, TiffFileWSIReader

__all__ = [
    "Slide",
    "SlideError",
    "TiledTiffWSIReader",
    "open_slide",
    "slide_thumbnail",
    "OPENSLIDE_SUFFIXES",
    "TIFF_SUFFIXES",
]

#: files OpenSlide reads (vendor formats and generic tiled TIFF)
OPENSLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif")
#: files tifffile reads
TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".ome.tif", ".ome.tiff", ".btf", ".tf8", ".qptiff")


class SlideError(ValueError):
    """A slide that cannot be read or has no physical resolution; the message is one line for the user."""


def _um_per_unit(unit_name: str) -> float | None:
    return {"CENTIMETER": 1e4, "INCH": 25400.0, "MILLIMETER": 1e3, "MICROMETER": 1.0}.get(unit_name.upper())


class TiledTiffWSIReader(TiffFileWSIReader):
    """MONAI's tifffile backend, reading only the tiles (or strips) a region overlaps, from tifffile's pyramid levels.

    Levels are ``series[0].levels`` (SubIFD and OME-TIFF pyramids included); microns per pixel come from the SVS
    description (``MPP = ...``), OME-XML ``PhysicalSizeX/Y`` or the resolution tags, scaled by each level's
    downsample. Reads are thread-safe (one lock around the file handle).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._lock = threading.Lock()

    @staticmethod
    def _levels(wsi) -> list:
        return list(wsi.series[0].levels)

    @staticmethod
    def _page(wsi, level: int):
        return TiledTiffWSIReader._levels(wsi)[level].keyframe

    def get_level_count(self, wsi) -> int:
        return len(self._levels(wsi))

    def get_size(self, wsi, level: int) -> tuple[int, int]:
        page = self._page(wsi, level)
        return int(page.imagelength), int(page.imagewidth)

    def get_downsample_ratio(self, wsi, level: int) -> float:
        return float(self.get_size(wsi, 0)[1]) / float(self.get_size(wsi, level)[1])

    def get_mpp(self, wsi, level: int) -> tuple[float, float]:
        page = self._page(wsi, 0)
        down = self.get_downsample_ratio(wsi, level)
        desc = page.description or ""
        m = re.search(r"MPP\s*=\s*([0-9.eE+-]+)", desc)  # Aperio SVS
        if m and float(m.group(1)) > 0:
            return float(m.group(1)) * down, float(m.group(1)) * down
        if wsi.is_ome:
            mx = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', wsi.ome_metadata or "")
            my = re.search(r'PhysicalSizeY="([0-9.eE+-]+)"', wsi.ome_metadata or "")
            ux = re.search(r'PhysicalSizeXUnit="([^"]+)"', wsi.ome_metadata or "")
            if mx and my and (ux is None or ux.group(1) in ("µm", "um", "micron")):
                return float(my.group(1)) * down, float(mx.group(1)) * down
        tags = page.tags
        if "XResolution" in tags and "YResolution" in tags and "ResolutionUnit" in tags:
            unit = _um_per_unit(tags["ResolutionUnit"].value.name)
            (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
            if unit is not None and xn and yn and xn / xd > 1.0:  # 1 pixel per inch/cm is a writer's placeholder
                return unit * yd / yn * down, unit * xd / xn * down
        raise ValueError("no microns per pixel in the file")

    def _get_patch(self, wsi, location, size, level, dtype, mode) -> np.ndarray:
        page = self._page(wsi, level)
        down = self.get_downsample_ratio(wsi, level)
        y0, x0 = (int(round(v / down)) for v in location)
        h, w = int(size[0]), int(size[1])
        lh, lw = int(page.imagelength), int(page.imagewidth)
        spp = int(page.samplesperpixel)
        out = np.full((h, w, spp), 255, dtype=np.uint8)  # outside the scanned area: glass
        if page.is_tiled:
            th, tw = int(page.tilelength), int(page.tilewidth)
        else:
            th, tw = int(page.rowsperstrip or lh), lw
        per_row = -(-lw // tw)
        ys, xs = max(y0, 0), max(x0, 0)
        ye, xe = min(y0 + h, lh), min(x0 + w, lw)
        if ys < ye and xs < xe:
            fh = wsi.filehandle
            decode = page.decode
            tables = getattr(page, "jpegtables", None)
            for ty in range(ys // th, (ye - 1) // th + 1):
                for tx in range(xs // tw, (xe - 1) // tw + 1):
                    index = ty * per_row + tx
                    offset, count = page.dataoffsets[index], page.databytecounts[index]
                    with self._lock:
                        fh.seek(offset)
                        data = fh.read(count)
                    seg = decode(data, index, jpegtables=tables)[0]
                    if seg is None:  # an empty (sparse) tile
                        continue
                    seg = seg.reshape(seg.shape[-3:])
                    sy, sx = ty * th, tx * tw
                    a0, a1 = max(ys, sy), min(ye, sy + th, lh)
                    b0, b1 = max(xs, sx), min(xe, sx + tw, lw)
                    out[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] = seg[a0 - sy : a1 - sy, b0 - sx : b1 - sx, :spp]
        if out.shape[-1] == 1:
            out = np.repeat(out, 3, axis=-1)
        out = out[..., :3] if mode == "RGB" else out
        return np.moveaxis(out.astype(dtype, copy=False), -1, self.channel_dim)


@dataclass
class Slide:
    """An open slide: its levels, their microns per pixel, and region reads as ``(H, W, 3)`` uint8 RGB.

    Attributes:
        path: the file.
        backend: ``"cucim"``, ``"openslide"`` or ``"tifffile"``.
        mpp: microns per pixel at level 0 ``(x, y)``; ``None`` when the file has none and no override was given.
        sizes: ``(width, height)`` of every level.
        downsamples: level-0 pixels per level pixel, per level.
    """

    path: Path
    backend: str
    reader: BaseWSIReader
    wsi: object
    mpp: tuple[float, float] | None
    sizes: list[tuple[int, int]]
    downsamples: list[float]

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """The region at ``level`` whose top-left pixel is ``(x, y)`` *in that level's pixels*, ``w × h`` pixels;
        parts outside the slide come back white (glass). Returns ``(h, w, 3)`` uint8."""
        lw, lh = self.sizes[level]
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        xs, ys, xe, ye = max(x, 0), max(y, 0), min(x + w, lw), min(y + h, lh)
        if xs >= xe or ys >= ye:
            return out
        down = self.downsamples[level]
        loc = (int(round(ys * down)), int(round(xs * down)))
        if self.backend == "openslide":
            patch, _ = self.reader.get_data(self.wsi, location=loc, size=(ye - ys, xe - xs), level=level, mode="RGBA")
            rgba = np.moveaxis(np.asarray(patch), 0, -1).astype(np.float32)
            alpha = rgba[..., 3:] / 255.0  # OpenSlide's transparent pixels lie outside the scanned area: glass
            region = np.round(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
        else:
            patch, _ = self.reader.get_data(self.wsi, location=loc, size=(ye - ys, xe - xs), level=level)
            region = np.moveaxis(np.asarray(patch), 0, -1)
        out[ys - y : ye - y, xs - x : xe - x] = region
        return out

    def level_mpp(self, level: int) -> float:
        """Mean microns per pixel at ``level`` (requires :attr:`mpp`)."""
        assert self.mpp is not None
        return float(np.mean(self.mpp)) * self.downsamples[level]

    def close(self) -> None:
        close = getattr(self.wsi, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "Slide":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _try_openslide(path: Path, prefer_tifffile_pyramid: bool = True):
    """MONAI's OpenSlide backend when OpenSlide knows the file; ``None`` otherwise, and (``prefer_tifffile_pyramid``)
    for a generic TIFF in which tifffile finds more pyramid levels than OpenSlide."""
    try:
        import openslide
    except ImportError:
        return None
    try:
        if openslide.OpenSlide.detect_format(str(path)) is None:
            return None
    except openslide.OpenSlideError:
        return None
    reader = OpenSlideWSIReader(channel_dim=0)
    wsi = reader.read(str(path))
    generic = wsi.properties.get("openslide.vendor") == "generic-tiff"
    if prefer_tifffile_pyramid and generic and _tifffile_levels(path) > wsi.level_count:
        wsi.close()  # an OME-TIFF or SubIFD pyramid: OpenSlide sees only its full-resolution level
        return None
    return reader, wsi


#: files cuCIM reads
CUCIM_SUFFIXES = (".svs", ".tif", ".tiff")


def _try_cucim(path: Path):
    """MONAI's cuCIM backend, when ``cucim`` is installed and reads the file; ``None`` otherwise (OME-TIFF and
    SubIFD pyramids are left to tifffile, whose levels cuCIM does not list)."""
    import importlib.util

    if importlib.util.find_spec("cucim") is None or not path.name.lower().endswith(CUCIM_SUFFIXES):
        return None
    if path.name.lower().endswith((".ome.tif", ".ome.tiff")):
        return None
    try:
        reader = CuCIMWSIReader(channel_dim=0)
        return reader, reader.read(str(path))
    except Exception:  # noqa: BLE001 - cuCIM raises its own types for formats it does not know
        return None


def _tifffile_levels(path: Path) -> int:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return len(tif.series[0].levels)
    except Exception:  # noqa: BLE001 - not a file tifffile can parse
        return 0


def open_slide(path: str | Path, backend: str | None = None, mpp: float | None = None) -> Slide:
    """Open a slide with cuCIM where it is installed and reads the file (SVS, generic TIFF), else OpenSlide when it
    knows the format, else tifffile (OME-TIFF, pyramidal or plain TIFF).

    Args:
        path: the slide file.
        backend: ``"cucim"``, ``"openslide"`` or ``"tifffile"`` to force one; ``None`` picks as above.
        mpp: microns per pixel at level 0, overriding (or standing in for) the file's own.

    Raises:
        SlideError: no backend can read the file, it is not RGB, or ``backend`` is unknown.
    """
    path = Path(path)
    if not path.is_file():
        raise SlideError(f"{path}: no such file")
    if backend not in (None, "cucim", "openslide", "tifffile"):
        raise SlideError(f"unknown slide backend {backend!r}: use cucim, openslide or tifffile")
    opened = None
    name = "cucim"
    if backend in (None, "cucim"):
        opened = _try_cucim(path)
        if opened is None and backend == "cucim":
            raise SlideError(f"{path.name}: cuCIM cannot read it (is cucim installed?)")
    if opened is None and backend in (None, "openslide"):
        opened = _try_openslide(path, prefer_tifffile_pyramid=backend is None)
        if opened is None and backend == "openslide":
            raise SlideError(f"{path.name}: OpenSlide cannot read it (is openslide-bin installed?)")
        name = "openslide"
    if opened is None:
        name = "tifffile"
        try:
            reader = TiledTiffWSIReader(channel_dim=0)
            opened = reader, reader.read(str(path))
        except Exception as exc:  # noqa: BLE001 - tifffile raises many types for a file it cannot parse
            raise SlideError(f"{path.name}: not a slide OpenSlide or tifffile can read ({exc})") from exc
    reader, wsi = opened
    try:
        n = reader.get_level_count(wsi)
        sizes = [tuple(int(v) for v in reversed(reader.get_size(wsi, lv))) for lv in range(n)]
        downs = [float(reader.get_downsample_ratio(wsi, lv)) for lv in range(n)]
        if name == "tifffile":
            spp = int(TiledTiffWSIReader._page(wsi, 0).samplesperpixel)
            if spp not in (1, 3, 4):
                raise SlideError(f"{path.name}: {spp} samples per pixel, expected an RGB slide")
        file_mpp = None
        try:
            my, mx = reader.get_mpp(wsi, 0)
            file_mpp = (float(mx), float(my)) if mx > 0 and my > 0 else None
        except (ValueError, KeyError, TypeError):
            file_mpp = None
    except SlideError:
        getattr(wsi, "close", lambda: None)()
        raise
    return Slide(
        path=path,
        backend=name,
        reader=reader,
        wsi=wsi,
        mpp=(float(mpp), float(mpp)) if mpp else file_mpp,
        sizes=sizes,
        downsamples=downs,
    )


def slide_thumbnail(
    slide: Slide, mpp: float = 2.0, max_side: int = 2048, chunk: int = 1024
) -> tuple[np.ndarray, float]:
    """A low-resolution RGB image of the whole slide, read chunk by chunk (memory bounded by ``chunk``, not the slide).

    Args:
        slide: the open slide.
        mpp: wanted microns per thumbnail pixel (ignored when the slide has no resolution: ``max_side`` decides).
        max_side: the thumbnail's longest side is at most this (coarser than ``mpp`` for very large slides).
        chunk: pixels of the level read per chunk side.

    Returns:
        ``(h, w, 3)`` uint8 and the level-0 pixels per thumbnail pixel (the same along x and y).
    """
    w0, h0 = slide.sizes[0]
    want = max(float(max(w0, h0)) / max_side, 1.0)  # level-0 pixels per thumbnail pixel
    if slide.mpp is not None:
        want = max(want, mpp / float(np.mean(slide.mpp)))
    level = max((lv for lv, d in enumerate(slide.downsamples) if d <= want), key=lambda lv: slide.downsamples[lv])
    r = max(1, int(want / slide.downsamples[level] + 1e-6))
    while max(-(-slide.sizes[level][0] // r), -(-slide.sizes[level][1] // r)) > max_side:
        r += 1
    lw, lh = slide.sizes[level]
    tw, th = -(-lw // r), -(-lh // r)
    thumb = np.empty((th, tw, 3), dtype=np.uint8)
    step = max(1, chunk // r)  # thumbnail pixels per chunk side
    for ty in range(0, th, step):
        for tx in range(0, tw, step):
            cw, ch = min(step, tw - tx), min(step, th - ty)
            reg = slide.read(level, tx * r, ty * r, cw * r, ch * r)  # beyond the edge: glass
            thumb[ty : ty + ch, tx : tx + cw] = reg.reshape(ch, r, cw, r, 3).mean(axis=(1, 3), dtype=np.float32).round()
    return thumb, slide.downsamples[level] * r
