"""Reading, validating and atomically writing H&E tiles.

Every entry point of the project goes through :func:`as_rgb_uint8` (arrays) or :func:`load_rgb` (files), so bad
input fails early with an :class:`InvalidImageError` that names the problem instead of deep inside numpy.

Documented fallbacks (everything else raises):

* RGBA whose alpha channel is fully opaque: the alpha channel is dropped.
* 16-bit RGB: rescaled to 8 bit (``value // 257``). 8-, 10-, 12- or 14-bit data stored in 16 bits (a TIFF whose
  ``BitsPerSample`` says so, or, failing that, whose largest value fits in that many bits) is scaled by its own depth,
  with a warning when the depth was inferred from the values.
* float RGB in ``[0, 1]``: scaled by 255; float RGB in ``[0, 255]``: rounded.
"""

from __future__ import annotations

import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "MIN_SIZE",
    "IMAGE_SUFFIXES",
    "InvalidImageError",
    "as_rgb_uint8",
    "load_rgb",
    "load_instance_map",
    "list_images",
    "find_label",
    "atomic_path",
    "atomic_paths",
    "png_bytes",
    "write_png",
    "write_tiff",
    "save_png",
    "save_tiff",
    "save_text",
]

#: smallest tile side we accept: below this there is no room for a nucleus and its context
MIN_SIZE = 32
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


class InvalidImageError(ValueError):
    """The input is not an RGB H&E tile this project can process; the message says why."""


def as_rgb_uint8(
    image: np.ndarray | torch.Tensor, channel_first: bool | None = None, name: str = "image", bits: int | None = None
) -> np.ndarray:
    """Validate an RGB tile and return it as a channel-last ``(H, W, 3)`` uint8 array.

    Args:
        image: ``(H, W, C)`` or ``(C, H, W)`` array or tensor, C in {3, 4}.
        channel_first: layout of ``image``; ``None`` guesses from where the size-3/4 axis is.
        name: used in error messages (a file name, for example).
        bits: significant bits per sample of 16-bit data when a file states 8, 10, 12 or 14 (a TIFF's ``BitsPerSample``);
            otherwise the depth is inferred from the values.

    Returns:
        ``(H, W, 3)`` uint8 array (a copy when a conversion was needed).

    Raises:
        InvalidImageError: grey, non-opaque RGBA, NaN/inf, negative or out-of-range values, unsupported dtype, or a
            side shorter than :data:`MIN_SIZE`.
    """
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 2 or (
        arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]) and 3 not in (arr.shape[0], arr.shape[-1])
    ):
        raise InvalidImageError(f"{name}: greyscale image of shape {arr.shape}; an RGB H&E tile is required")
    if arr.ndim != 3:
        raise InvalidImageError(f"{name}: expected a 2D RGB image (H, W, 3) or (3, H, W), got shape {arr.shape}")
    if channel_first is None:
        channel_first = arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4)
    if channel_first:
        arr = np.moveaxis(arr, 0, -1)
    if arr.shape[-1] not in (3, 4):
        raise InvalidImageError(f"{name}: expected 3 (RGB) or 4 (RGBA) channels, got {arr.shape[-1]}")
    if min(arr.shape[:2]) < MIN_SIZE:
        raise InvalidImageError(
            f"{name}: image of {arr.shape[0]}x{arr.shape[1]} pixels is too small; both sides must be >= {MIN_SIZE}"
        )
    arr = _to_uint8(arr, name, bits)
    if arr.shape[-1] == 4:
        if arr[..., 3].min() < 255:
            raise InvalidImageError(f"{name}: RGBA image with transparent pixels; flatten it onto white first")
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)


def _to_uint8(arr: np.ndarray, name: str, bits: int | None = None) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_ or arr.dtype.kind not in "uif":
        raise InvalidImageError(f"{name}: unsupported pixel type {arr.dtype}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise InvalidImageError(f"{name}: image contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 255:
            raise InvalidImageError(f"{name}: float image values must lie in [0, 1] or [0, 255], got [{lo:g}, {hi:g}]")
        scale = 255.0 if hi <= 1.0 else 1.0
        return np.rint(arr * scale).astype(np.uint8)
    if arr.dtype == np.uint16:
        return _uint16_to_uint8(arr, name, bits)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 255:
        raise InvalidImageError(f"{name}: {arr.dtype} image values must lie in [0, 255], got [{lo}, {hi}]")
    return arr.astype(np.uint8)


#: depths found in 16-bit containers: 8-bit data saved as 16 bit, and 10-, 12- and 14-bit cameras
_STORED_DEPTHS = (8, 10, 12, 14)


def _uint16_to_uint8(arr: np.ndarray, name: str, bits: int | None) -> np.ndarray:
    """16-bit samples to 8 bit by their real depth: ``// 257`` for full 16-bit data (as always), else ``· 255 / (2^b − 1)``.

    Without a stated depth, data whose largest value fits in 8, 10, 12 or 14 bits is read as that depth: an H&E tile has
    bright glass or stroma near the top of its range, so 16-bit data that never exceeds 4095 is 12-bit data, not a
    near-black tile.
    """
    if bits not in _STORED_DEPTHS:  # a 16-bit tag is no proof: 12-bit cameras write BitsPerSample = 16
        top = int(arr.max())
        bits = next((b for b in _STORED_DEPTHS if top < 2**b), 16)
        if bits < 16:
            warnings.warn(
                f"{name}: 16-bit image whose values never exceed {top}; read as {bits}-bit data "
                f"(scaled by 255/{2**bits - 1})",
                stacklevel=3,
            )
    if bits == 16:
        return (arr // 257).astype(np.uint8)
    scaled = np.rint(np.minimum(arr, 2**bits - 1).astype(np.float32) * np.float32(255.0 / (2**bits - 1)))
    return scaled.astype(np.uint8)


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an RGB tile (png/tif/jpg) as ``(H, W, 3)`` uint8; see :func:`as_rgb_uint8` for what is accepted."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    arr, bits = _read_array(path)
    return as_rgb_uint8(arr, channel_first=False, name=str(path), bits=bits)


def load_instance_map(path: str | os.PathLike) -> np.ndarray:
    """Read an instance label map (16-bit PNG or TIFF) as a 2D int64 array, 0 = background."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label map not found: {path}")
    arr, _ = _read_array(path)
    if arr.ndim != 2 or arr.dtype.kind not in "ui":
        raise InvalidImageError(f"{path}: an instance map must be a 2D integer image, got {arr.shape} {arr.dtype}")
    return arr.astype(np.int64)


#: PIL modes that are colour but not RGB: named in the error instead of being mistaken for RGBA or greyscale
_OTHER_COLOUR_MODES = {"CMYK": "CMYK", "YCbCr": "YCbCr", "LAB": "CIELAB", "HSV": "HSV"}


def _read_array(path: Path) -> tuple[np.ndarray, int | None]:
    """The file's pixels and, for a TIFF, its ``BitsPerSample`` (``None`` for other formats)."""
    bits = None
    if path.stat().st_size == 0:
        raise InvalidImageError(f"{path}: empty file (0 bytes)")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                arr = np.asarray(tif.asarray())
                if page.photometric is not None and page.photometric.name == "SEPARATED":
                    raise InvalidImageError(f"{path}: a CMYK (separated) TIFF; save it as RGB first")
                bits_tag = page.bitspersample
                bits = int(bits_tag[0] if isinstance(bits_tag, tuple) else bits_tag)
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                if im.mode in _OTHER_COLOUR_MODES:
                    raise InvalidImageError(f"{path}: a {_OTHER_COLOUR_MODES[im.mode]} image; save it as RGB first")
                if im.mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                if im.mode in ("I;16", "I;16B", "I;16L"):
                    arr = np.asarray(im).astype(np.uint16)
                else:
                    arr = np.asarray(im)
    except InvalidImageError:
        raise
    except Exception as exc:  # PIL/tifffile raise a zoo of types for truncated or non-image files
        raise InvalidImageError(f"{path}: cannot be read as an image ({type(exc).__name__}: {exc})") from exc
    return arr, bits


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Sorted image files (png/tif/tiff/jpg/jpeg) directly inside ``directory``, hidden (dot) files left out: they are
    temporaries of an interrupted writer (:func:`atomic_path`) or system files, never tiles.

    Raises:
        FileNotFoundError: the directory does not exist.
        ValueError: it holds no image.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"image directory not found: {directory}")
    files = sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {directory}")
    return files


def find_label(labels_dir: str | os.PathLike, image: str | os.PathLike) -> Path:
    """The label map of ``image`` in ``labels_dir``: the same file name, else the same stem with any suffix.

    Raises:
        FileNotFoundError: no such label map.
    """
    labels_dir, image = Path(labels_dir), Path(image)
    same = labels_dir / image.name
    if same.is_file():
        return same
    candidates = sorted(p for p in labels_dir.glob(f"{image.stem}.*") if p.is_file())
    if not candidates:
        raise FileNotFoundError(f"no label map for {image.name} in {labels_dir}")
    return candidates[0]


def _temporary_beside(path: Path) -> Path:
    """An empty hidden file next to ``path`` (same folder, so the final rename is atomic), with normal permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; outputs get the usual permissions
    return Path(tmp)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, on error removed.

    Readers never see a half-written file, and a crash leaves the previous version (or nothing) in place.
    """
    with atomic_paths([path]) as (tmp,):
        yield tmp


@contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """:func:`atomic_path` for a set of files that belong together: all of them appear, or none does.

    Every file is written to its temporary first; the renames follow only when all are written, in the given order, so
    the last path is the one to test for completeness. If the renames are interrupted (an exception, or SIGTERM turned
    into ``SystemExit`` by :func:`labelfree.engines.runs.install_signal_cleanup`), the files already renamed are removed again.
    Temporaries are removed in every case.
    """
    finals = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for p in finals:
            temps.append(_temporary_beside(p))
        yield list(temps)
        done: list[Path] = []
        try:
            for tmp, final in zip(temps, finals):
                os.replace(tmp, final)
                done.append(final)
        except BaseException:
            for final in done:
                final.unlink(missing_ok=True)
            raise
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


#: zlib level of every PNG written: 1 encodes a 1000² RGB overlay about 4x faster than PIL's default 6 for a file about
#: 10 % larger (measured: 0.82 s -> 0.19 s, 1.57 -> 1.73 MB); at 6 the overlay took longer than the network
PNG_COMPRESS_LEVEL = 1
#: zlib strategy of every PNG: run-length matching only, on rows filtered by PNG's "Up" filter (each byte minus the
#: byte above it). PIL tries all five PNG filters on every row and keeps the best, which on a 1000² overlay costs more
#: than the compression itself; one fixed filter, computed by numpy, writes it 2.0x faster (41 ms instead of 82) for a
#: file 16 % larger, and the grey masks and instance maps 3.5-3.8x faster and smaller (8 MoNuSeg tiles;
#: ``python -m bench.png_encoder``, ``bench/results/speed/png/png.md``)
PNG_STRATEGY = zlib.Z_RLE
#: zlib level of the instance TIFF: level 1 writes a 1000² map in half the time of the default 6, for a file of about
#: 70 kB instead of 36 kB
TIFF_ZLIB_LEVEL = 1


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_text_chunk(key: str, value: str) -> bytes:
    """A ``tEXt`` chunk, or ``iTXt`` (UTF-8) when the text is not Latin-1, as PIL writes them."""
    try:
        return _png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return _png_chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


def png_bytes(array: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """Encode a uint8 (grey, RGB or RGBA) or uint16 (grey) array as a PNG file: every row under the "Up" filter, zlib
    at :data:`PNG_COMPRESS_LEVEL` with :data:`PNG_STRATEGY`, optional text chunks; lossless (decoders give the array
    back bit for bit).

    Args:
        array: ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8, or ``(H, W)`` uint16.
        text: metadata, one text chunk per item.

    Returns:
        the file's bytes.
    """
    array = np.asarray(array)
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"PNG output must be uint8 or uint16, got {array.dtype}")
    colour_type = 0 if array.ndim == 2 else {3: 2, 4: 6}.get(array.shape[-1]) if array.ndim == 3 else None
    if colour_type is None or (array.dtype == np.uint16 and array.ndim != 2) or 0 in array.shape:
        raise ValueError(f"PNG output must be (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, got {array.shape}")
    height, width = array.shape[:2]
    rows = np.ascontiguousarray(array.astype(">u2") if array.dtype == np.uint16 else array).view(np.uint8)
    rows = rows.reshape(height, -1)
    filtered = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # filter type "Up"
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG's filter does
    packer = zlib.compressobj(PNG_COMPRESS_LEVEL, zlib.DEFLATED, 15, 8, PNG_STRATEGY)
    data = packer.compress(filtered) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8 * array.itemsize, colour_type, 0, 0, 0)
    texts = b"".join(_png_text_chunk(str(k), str(v)) for k, v in (text or {}).items())
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + texts
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike, array: np.ndarray, text: dict[str, str] | None = None) -> None:
    """Write a uint8 (grey, RGB or RGBA) or uint16 (grey) array as PNG (:func:`png_bytes`) to exactly ``path`` (not
    atomic: use :func:`save_png`, or call it on a temporary of :func:`atomic_paths`), with optional text metadata."""
    Path(path).write_bytes(png_bytes(array, text))


def write_tiff(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write an array as a zlib-compressed TIFF to exactly ``path`` (not atomic; see :func:`write_png`)."""
    import tifffile

    tifffile.imwrite(path, np.asarray(array), compression="zlib", compressionargs={"level": TIFF_ZLIB_LEVEL})


def save_png(path: str | os.PathLike, array: np.ndarray, text: dict[str, str] | None = None) -> Path:
    """Atomically write a uint8 (grey or RGB) or uint16 (grey) array as PNG, with optional ``tEXt`` metadata."""
    with atomic_path(path) as tmp:
        write_png(tmp, array, text)
    return Path(path)


def save_tiff(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Atomically write an array as a zlib-compressed TIFF."""
    with atomic_path(path) as tmp:
        write_tiff(tmp, array)
    return Path(path)


def save_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write a text file (UTF-8): a report, a table, a JSON record."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
