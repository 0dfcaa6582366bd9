"""Label-free boundary placement: move the nuclei's outlines to where the haematoxylin changes fastest (issue 14).

DCGN's mask width follows the tile's colour clustering: on some tiles (the frozen sections) its nuclei are far wider
than the stained blobs, on others narrower. Neither the network nor the mixture sees where a nucleus's edge is. The
stain does: a nucleus's haematoxylin falls off over a few pixels at its rim, and the steepest point of that fall is a
label-free place for the outline (what active contours and Otsu-on-the-gradient also seek). Here the outline of an
instance map is moved inwards or outwards by a whole number of pixels, and the offset whose outline sees the largest
mean haematoxylin gradient is kept:

* :func:`snap_tile`: one offset for the whole tile (every object moves alike);
* :func:`snap_objects`: one offset per object.

Shrinking keeps the pixels farther than the offset from the background (touching objects keep their shared line);
growing hands background pixels to the nearest object within the offset (``skimage.segmentation.expand_labels``).
Only an object's border with the background counts; an object that vanishes at an offset does not vote for it.
The offsets and the smoothing were set with the rule (``bench/results/dcgn_boundary_snap/rule.txt``), not fitted.
DCGN's five checkpoints are scored by ``bench.dcgn_posterior_variants --variants snap_tile,snap_objects``; this
module's :func:`run` screens SSimNet's checkpoints the same way (labels are read only to score):

    python -m bench.boundary_snap --images ../shared/data/monuseg/train/images \\
        --labels ../shared/data/monuseg/train/labels --out bench/results/dcgn_boundary_snap/ssimnet/monuseg
"""

from __future__ import annotations

import fire
import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels

from bench.ssimnet_variants import score_ssimnet_variants
from labelfree.transforms.instances import instances_from_map
from labelfree.transforms.io import tensor_to_rgb
from labelfree.transforms.stain import tile_stain_concentrations

VARIANTS = ("default", "snap_tile", "snap_objects")

#: candidate outline moves in pixels, negative inwards (set with the rule, not fitted)
OFFSETS = (-3, -2, -1, 0, 1, 2, 3)
#: Gaussian scale (pixels) of the haematoxylin gradient (set with the rule, not fitted)
GRAD_SIGMA = 1.0
#: the offsets in the order that settles ties: the smallest move first
_BY_MOVE = tuple(sorted(OFFSETS, key=abs))


def moved_outline(inst: np.ndarray, offset: int, inside: np.ndarray | None = None) -> np.ndarray:
    """``(H, W)`` ``inst`` with every object's border with the background moved by ``offset`` pixels.

    Args:
        inst: ``(H, W)`` int instance map, 0 background.
        offset: pixels; negative shrinks, positive grows into the background only.
        inside: ``(H, W)`` the Euclidean distance of each foreground pixel to the background (computed if ``None``).
    """
    if offset == 0:
        return inst
    if offset > 0:
        return expand_labels(inst, distance=offset)
    if inside is None:
        inside = ndi.distance_transform_edt(inst > 0)
    return np.where(inside > -offset, inst, 0)


def _background_border(inst: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: object pixels with a 4-neighbour in the background, the image's own edge not counted."""
    fg = inst > 0
    padded = np.pad(fg, 1, mode="edge")
    touches = ~padded[:-2, 1:-1] | ~padded[2:, 1:-1] | ~padded[1:-1, :-2] | ~padded[1:-1, 2:]
    return fg & touches


def _border_gradient(inst: np.ndarray, grad: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per label (index 0 unused): the summed gradient and the pixel count of its background border."""
    border = _background_border(inst)
    lab = inst[border]
    total = np.bincount(lab, weights=grad[border], minlength=n_labels + 1)
    count = np.bincount(lab, minlength=n_labels + 1).astype(np.float64)
    return total, count


def _candidates(inst: np.ndarray, haematoxylin: np.ndarray):
    """Yield, smallest move first, each offset, its moved map and its per-label border gradient sum and count."""
    grad = ndi.gaussian_gradient_magnitude(np.asarray(haematoxylin, np.float64), GRAD_SIGMA)
    inside = ndi.distance_transform_edt(inst > 0)
    n = int(inst.max())
    for offset in _BY_MOVE:
        moved = moved_outline(inst, offset, inside)
        yield offset, moved, *_border_gradient(moved, grad, n)


def snap_tile(inst: np.ndarray, haematoxylin: np.ndarray) -> tuple[np.ndarray, int]:
    """Move every outline by the one offset whose background border has the highest mean haematoxylin gradient.

    Args:
        inst: ``(H, W)`` int instance map, 0 background.
        haematoxylin: ``(H, W)`` the tile's haematoxylin concentration.

    Returns:
        ``(H, W)`` int32 instances and the offset chosen (ties go to the smallest move).
    """
    inst = np.asarray(inst).astype(np.int64)
    if inst.max() == 0:
        return inst.astype(np.int32), 0
    best, best_score, best_map = 0, -np.inf, inst
    for offset, moved, total, count in _candidates(inst, haematoxylin):
        score = total.sum() / count.sum() if count.sum() else -np.inf
        if score > best_score:
            best, best_score, best_map = offset, score, moved
    return best_map.astype(np.int32), best


def snap_objects(inst: np.ndarray, haematoxylin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move each object's outline by its own offset: the one whose background border has the highest mean
    haematoxylin gradient (ties go to the smallest move; an object that vanishes at an offset cannot pick it).

    Args:
        inst: ``(H, W)`` int instance map, 0 background.
        haematoxylin: ``(H, W)`` the tile's haematoxylin concentration.

    Returns:
        ``(H, W)`` int32 instances and, per label (index 0 unused), the offset chosen.
    """
    inst = np.asarray(inst).astype(np.int64)
    n = int(inst.max())
    if n == 0:
        return inst.astype(np.int32), np.zeros(1, np.int64)
    maps, scores = [], []
    for _, moved, total, count in _candidates(inst, haematoxylin):
        maps.append(moved)
        scores.append(np.where(count > 0, total / np.maximum(count, 1), -np.inf))
    # argmax takes the first best: the rows are ordered by the size of the move
    chosen = np.asarray(_BY_MOVE)[np.stack(scores).argmax(0)]
    chosen[0] = 0
    out = np.zeros_like(inst)
    for offset, moved in zip(_BY_MOVE, maps):
        keep = (moved > 0) & (chosen[moved] == offset)
        out[keep] = moved[keep]
    return out.astype(np.int32), chosen


def _ssimnet_raw(prob: np.ndarray, views: list, item: dict, kwargs: dict) -> dict:
    """The bundle's instances before its small-object rule, once per variant: the shared loop drops small objects
    once, then :func:`_ssimnet_snap` moves the outlines of the finished output. The tile's haematoxylin, which both
    snaps read, is computed here once per tile and kept in ``item``."""
    rgb = tensor_to_rgb(item["tile"])
    if rgb.shape[:2] != prob.shape:
        raise ValueError("the network saw the tile at another scale; score it at its own")
    item["haematoxylin"] = tile_stain_concentrations(rgb)[0][0]
    return dict.fromkeys(VARIANTS, instances_from_map(prob, **kwargs))


def _ssimnet_snap(variant: str, objects: np.ndarray, item: dict) -> np.ndarray:
    """``default``: the bundle's output as it is; ``snap_tile`` / ``snap_objects``: its outlines moved."""
    if variant == "default":
        return objects
    snap = snap_tile if variant == "snap_tile" else snap_objects
    return snap(objects, item["haematoxylin"])[0]


def run(images: str, labels: str, out: str, ckpts: str | tuple = "", threads: int = 2) -> dict:
    """Score SSimNet's ``default``, ``snap_tile`` and ``snap_objects`` for every checkpoint (empty: the shipped
    one); write ``boundary_snap.{json,md}`` under ``out``."""
    title = "SSimNet: outlines moved to the steepest haematoxylin"
    return score_ssimnet_variants(
        images, labels, out, ckpts, threads, VARIANTS, _ssimnet_raw, "boundary_snap", title, after_drop=_ssimnet_snap
    )


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
