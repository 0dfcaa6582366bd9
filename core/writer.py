"""Writes the project's output contract for one image, flat in an output folder.

``<stem>_inst.tif`` (uint16, or uint32 above 65,535 instances; 0 = background), ``<stem>_seg.png`` (0/255, or the class
map for multi-class output) and ``<stem>_overlay.png`` (contours on the image). Every array is computed before the
first file is written, and the three files are written as a set (``labelfree.core.imageio.atomic_paths``): all three
appear, or none does, and ``_inst.tif`` appears last, so its presence marks a finished tile. A mode that has more to
show (DCGN's tissue map, ``<stem>_tissue.png``) adds its images to the same set.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from labelfree.core.imageio import atomic_paths, write_png, write_tiff
from labelfree.core.overlay import contour_overlay

__all__ = ["output_paths", "write_segmentation"]


def output_paths(out_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """The three output paths of image ``stem``."""
    out = Path(out_dir)
    return {"inst": out / f"{stem}_inst.tif", "seg": out / f"{stem}_seg.png", "overlay": out / f"{stem}_overlay.png"}


def write_segmentation(
    out_dir: str | os.PathLike,
    stem: str,
    image: np.ndarray,
    instances: np.ndarray,
    seg: np.ndarray | None = None,
    seg_text: dict[str, str] | None = None,
    extra: dict[str, np.ndarray] | None = None,
    overlay: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write the three outputs of one image.

    Args:
        out_dir: output folder (created if missing).
        stem: input file name without suffix.
        image: ``(H, W, 3)`` uint8 RGB.
        instances: ``(H, W)`` instance map.
        seg: ``(H, W)`` uint8 segmentation to save as ``_seg.png``; default: ``255 * (instances > 0)``.
        seg_text: metadata stored as PNG text chunks of ``_seg.png`` (for example how classes were named).
        extra: more uint8 images, each written as ``<stem>_<name>.png`` with the others (``{"tissue": rgb}``).
        overlay: ``(H, W, 3)`` uint8 image to save as ``_overlay.png`` instead of the instance contours.

    Returns:
        the written paths by kind (``inst``, ``seg``, ``overlay`` and the names of ``extra``).
    """
    inst = np.squeeze(np.asarray(instances))
    if inst.shape != image.shape[:2]:
        raise ValueError(f"instance map {inst.shape} does not match the image {image.shape[:2]}")
    inst = inst.astype(np.uint16 if inst.max() <= np.iinfo(np.uint16).max else np.uint32)
    seg_arr = (inst > 0).astype(np.uint8) * 255 if seg is None else np.squeeze(np.asarray(seg)).astype(np.uint8)
    overlay = contour_overlay(image, inst) if overlay is None else np.asarray(overlay, dtype=np.uint8)
    extra = {} if extra is None else extra
    paths = output_paths(out_dir, stem)
    bad = [name for name in extra if name in paths or not name.isidentifier()]
    if bad:
        raise ValueError(f"extra output names must be new identifiers, got {bad}")
    paths.update({name: Path(out_dir) / f"{stem}_{name}.png" for name in extra})
    names = [*extra, "seg", "overlay", "inst"]  # _inst.tif last: its presence marks a finished tile
    with atomic_paths([paths[n] for n in names]) as tmps:
        tmp = dict(zip(names, tmps))
        for name, arr in extra.items():
            write_png(tmp[name], np.asarray(arr))
        write_png(tmp["seg"], seg_arr, text=seg_text)
        write_png(tmp["overlay"], overlay)
        write_tiff(tmp["inst"], inst)
    return paths
