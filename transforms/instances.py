"""Probability or binary nuclei map → instance map, by marker-controlled watershed on the distance transform.

Markers are the h-maxima of the (lightly smoothed) Euclidean distance to the background: two touching round nuclei
give two distance peaks separated by a saddle deeper than ``h`` and are split; the ripples of one irregular nucleus
are shallower than ``h`` and are not. The distance is :func:`labelfree.core.distance.distance_to_background` (scipy's
exact transform, found by a search bounded by the answer: nuclei lie a few pixels from the background); the markers
and the flooding are one cut of the basin graph of :mod:`labelfree.transforms.dynamics`.

Given a probability map rather than a mask, the distance is weighted by the probability. A network trained on
SSimNet's soft labels (0.5 on a nucleus rim, rising towards its centre) and Voronoi edges (background between
neighbours) predicts a dip where two nuclei touch, which the weighting adds to the depth of the saddle between them.
Holes that are filled keep weight 1 (the pale inside of a nucleus is not a boundary). On a binary mask the weight is 1
everywhere, so masks are split exactly as without it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from functools import partial

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type
from scipy import ndimage as ndi

from labelfree.core.distance import distance_to_background
from labelfree.core.shape import fill_convex_hulls, solidities
from labelfree.transforms.contour import fill_mask_holes, remove_small_objects
from labelfree.transforms.dynamics import BasinGraph, basin_graph, cut_basins
from labelfree.transforms.io import tensor_to_rgb
from labelfree.transforms.scale import resample_rgb
from labelfree.transforms.stain import MIN_TISSUE_FRACTION, NO_TISSUE_NOTE, has_tissue, optical_density

__all__ = [
    "MIN_REL_AREA",
    "drop_small_objects",
    "drop_uncertain_objects",
    "fill_contact_gaps",
    "foreground_relief",
    "instances_from_map",
    "median_object_area",
    "resplit_irregular_objects",
    "sequential_labels",
    "NucleiInstances",
    "NucleiInstancesd",
    "NucleiInstancesD",
    "NucleiInstancesDict",
    "ProbabilityToInstancesd",
]


def instances_from_map(
    prob: np.ndarray | torch.Tensor,
    threshold: float = 0.5,
    min_size: int = 30,
    h: float = 2.0,
    sigma: float = 1.0,
    fill_holes: bool = True,
    resplit_irregular: bool = False,
    min_mean_prob: float = 0.0,
    min_rel_area: float = 0.0,
    distance: np.ndarray | torch.Tensor | None = None,
    contact_gap: int = 0,
    hull_solidity: float = 0.0,
) -> np.ndarray:
    """Split a foreground map into nuclei instances.

    Args:
        prob: ``(H, W)`` or ``(1, H, W)`` foreground probability in [0, 1] or a binary mask.
        threshold: foreground = ``prob > threshold``.
        min_size: instances (and foreground components) smaller than this many pixels are dropped.
        h: minimal depth (pixels of distance, weighted by the probability) of a saddle between two markers.
        sigma: Gaussian smoothing of the distance map before the markers are taken (0 = none).
        fill_holes: fill holes in the foreground first.
        resplit_irregular: split again, with a shallower marker depth, the objects that look like several nuclei
            (:func:`resplit_irregular_objects`).
        min_mean_prob: objects whose mean probability is below this are dropped (:func:`drop_uncertain_objects`);
            0 keeps every object. Ignored for a binary mask.
        min_rel_area: objects smaller than this fraction of the tile's median object area are dropped, after
            ``min_mean_prob`` (:func:`drop_small_objects`); 0 keeps every object.
        distance: ``(H, W)`` or ``(1, H, W)`` a network's estimate of each pixel's distance (pixels) to its own
            nucleus's edge (:mod:`labelfree.transforms.edge_distance`), used in place of the distance to the
            foreground's edge in the relief; ``None``: the latter.
        contact_gap: last, the background pixels within this many pixels of two different objects go to the nearest
            (:func:`fill_contact_gaps`); 0: none.
        hull_solidity: after the drops, objects whose solidity is below this take the background pixels of their
            convex hull (:func:`labelfree.core.shape.fill_convex_hulls`: lace traced along a pale nucleus's chromatin
            becomes the nucleus); 0: none.

    Returns:
        ``(H, W)`` int32 instance map, 0 = background, ids ``1..n``.
    """
    p = _plane(prob, "probability")
    if distance is not None:
        distance = _plane(distance, "distance")
        if distance.shape != p.shape:
            raise ValueError(f"the distance map's shape {distance.shape} differs from the probability's {p.shape}")
        distance = np.maximum(distance.astype(np.float64), 0.0)
    fg, relief = foreground_relief(p, threshold, min_size, sigma, fill_holes, distance)
    if not fg.any():
        return np.zeros(fg.shape, dtype=np.int32)
    # a component too shallow for any marker (thinner than h) comes back as one region: kept whole, not lost
    graph = basin_graph(relief, fg)
    inst = sequential_labels(cut_basins(graph, h)[graph.basins], min_size)
    if resplit_irregular:
        inst = resplit_irregular_objects(inst, relief, h, min_size, graph=graph, renumber=False)
    # both drops and the re-split's renumbering in one pass over the pixels: the same map as one after the other
    flat = inst.ravel()
    areas = np.bincount(flat)
    keep = areas > 0
    if min_mean_prob > 0 and p.dtype.kind == "f":
        keep &= _certain(flat, areas, p, threshold, min_mean_prob)
    if min_rel_area > 0:
        keep = _large_enough(areas, keep, min_rel_area)
    inst = _renumber_kept(inst, keep)
    if hull_solidity > 0:
        inst = fill_convex_hulls(inst, hull_solidity)
    return fill_contact_gaps(inst, contact_gap) if contact_gap else inst


def fill_contact_gaps(inst: np.ndarray, width: int = 2) -> np.ndarray:
    """Give the thin background gaps between touching objects back to the objects.

    A network taught that the line where two nuclei touch is background (SSimNet's self-training rounds) draws a gap of
    a pixel or two between them; the nuclei themselves reach the line. A background pixel within ``width`` pixels
    (chessboard) of two different objects is given to the nearest one, one pixel ring at a time (equidistant: the
    larger id). Only such pixels change: the outline of an object with no neighbour within ``width`` stays where it is,
    and a gap wider than ``2 * width - 1`` pixels is left open.

    Args:
        inst: ``(H, W)`` int instance map, 0 = background.
        width: how far from each object a gap pixel may be; 0 returns ``inst`` unchanged.

    Returns:
        ``(H, W)`` instance map of ``inst``'s dtype, the same ids.
    """
    if int(width) != width or width < 0:
        raise ValueError(f"the contact gap must be a whole number of pixels >= 0, got {width}")
    lab = np.asarray(inst)
    if width == 0 or not lab.any():
        return lab
    size = 2 * int(width) + 1
    bg = lab == 0
    # a sentinel above every id (not the dtype's maximum, which some filter buffers wrap)
    highest = ndi.maximum_filter(lab, size=size)
    lowest = ndi.minimum_filter(np.where(bg, lab.max() + 1, lab), size=size)
    between = bg & (highest > 0) & (lowest < highest)
    out = lab.copy()
    for _ in range(int(width)):
        todo = between & (out == 0)
        if not todo.any():
            break
        grown = ndi.maximum_filter(out, size=3)
        out[todo] = grown[todo]
    return out


#: the size rule of self-training's purification (``labelfree.transforms.purify_objects``, fixed in SSimNet 0.3.0): an
#: object under a quarter of its tile's median object area is a speck or a sliver, not a nucleus
MIN_REL_AREA = 0.25


def drop_small_objects(inst: np.ndarray, min_rel_area: float = MIN_REL_AREA) -> np.ndarray:
    """Drop the objects smaller than ``min_rel_area`` × the tile's median object area.

    A fixed ``min_size`` in pixels cannot tell a speck from a nucleus at every magnification and on every tissue; the
    tile's own median object can: at 20× and at 40×, on a dense tile and a sparse one, a nucleus is of the tile's
    typical size and a fragment of a fibre, a membrane or a dust speck is much smaller. The rule is the one
    self-training's purification uses to call an object confident (:data:`MIN_REL_AREA`).

    Args:
        inst: ``(H, W)`` int instances ``0..n``.
        min_rel_area: the smallest object kept, as a fraction of the median area of the objects of ``inst``.

    Returns:
        ``(H, W)`` int32 instances ``1..m``, the kept objects in their order.
    """
    inst = np.asarray(inst)
    areas = np.bincount(inst.ravel())
    return _renumber_kept(inst, _large_enough(areas, areas > 0, min_rel_area))


def _large_enough(areas: np.ndarray, keep: np.ndarray, min_rel_area: float) -> np.ndarray:
    """``keep`` (indexed by label) without the objects under ``min_rel_area`` × the median area of the kept ones."""
    median = _median_object_area(np.where(keep, areas, 0))
    return keep if median is None else keep & (areas >= min_rel_area * median)


def median_object_area(inst: np.ndarray | torch.Tensor) -> tuple[float, int]:
    """The median area (pixels) of the objects of an instance map and their number; ``(0.0, 0)`` when it has none.

    Args:
        inst: ``(H, W)`` or ``(1, H, W)`` instance ids, 0 = background.
    """
    areas = np.bincount(np.asarray(torch.as_tensor(inst).detach().cpu()).astype(np.int64, copy=False).ravel())
    median = _median_object_area(areas)
    return (0.0, 0) if median is None else (median, int(np.count_nonzero(areas[1:])))


def _median_object_area(areas: np.ndarray) -> float | None:
    """The median area of the objects of a tile from its label histogram (``np.bincount`` of the instance map, index 0
    the background; labels without pixels are not objects), or ``None`` when it has none."""
    present = areas[1:][areas[1:] > 0]
    return float(np.median(present)) if present.size else None


def drop_uncertain_objects(inst: np.ndarray, prob: np.ndarray, threshold: float, min_mean_prob: float) -> np.ndarray:
    """Drop the objects whose mean probability is below ``min_mean_prob``.

    A network trained on SSimNet's soft labels learns 0.5 on a nucleus's outermost ring and more inside it, so the
    pixels of a nucleus it sees average well above 0.5, and an object that averages below is all rim: a boundary,
    fibre or shadow the network half-sees, not a nucleus. The pixels of a filled hole (probability not above
    ``threshold``) count as 1, as in the relief (:func:`foreground_relief`): the pale inside of a vesicular nucleus
    does not make it uncertain.

    Args:
        inst: ``(H, W)`` int instances ``0..n``.
        prob: ``(H, W)`` foreground probability the instances were drawn from.
        threshold: the foreground threshold they were drawn at.
        min_mean_prob: the lowest mean probability kept.

    Returns:
        ``(H, W)`` int32 instances ``1..m``, the kept objects in their order.
    """
    flat = inst.ravel()
    counts = np.bincount(flat)
    return _renumber_kept(inst, (counts > 0) & _certain(flat, counts, prob, threshold, min_mean_prob))


def _certain(
    flat: np.ndarray, counts: np.ndarray, prob: np.ndarray, threshold: float, min_mean_prob: float
) -> np.ndarray:
    """Which labels (of the flat instance map ``flat``, pixel ``counts`` per label) average at least
    ``min_mean_prob``, filled holes counted as 1."""
    sums = np.bincount(flat, weights=_holes_weigh_one(prob, threshold).ravel(), minlength=counts.size)
    return sums >= min_mean_prob * counts


def _holes_weigh_one(p: np.ndarray, threshold: float) -> np.ndarray:
    """The probability, with the pixels at or below ``threshold`` set to 1: inside the foreground those are filled
    holes, the pale inside of a nucleus, not a boundary."""
    return np.where(p > threshold, p, 1.0)


def _renumber_kept(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``labels`` with the regions ``keep`` (indexed by label) numbered ``1..n`` in label order and the rest 0."""
    keep = keep.copy()
    keep[0] = False
    lut = np.where(keep, np.cumsum(keep), 0).astype(np.int32)
    return lut[labels]


def _plane(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """``(H, W)`` or ``(1, H, W)`` array or tensor → ``(H, W)`` array, checked to be 2D and, if float, finite."""
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
    a = np.squeeze(a, axis=0) if a.ndim == 3 and a.shape[0] == 1 else a
    if a.ndim != 2:
        raise ValueError(f"expected a (H, W) or (1, H, W) map, got shape {a.shape}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"the {name} map contains NaN or infinite values")
    return a


def foreground_relief(
    p: np.ndarray,
    threshold: float = 0.5,
    min_size: int = 30,
    sigma: float = 1.0,
    fill_holes: bool = True,
    distance: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The foreground and the relief :func:`instances_from_map` floods.

    Args:
        p: ``(H, W)`` foreground probability in [0, 1] or a binary mask.
        threshold, min_size, sigma, fill_holes: as :func:`instances_from_map`.
        distance: ``(H, W)`` non-negative distance to each nucleus's own edge, used instead of the distance to the
            background; ``None``: the latter.

    Returns:
        ``(fg, relief)``: ``(H, W)`` bool foreground and float relief (the probability-weighted distance to the
        background, smoothed, 0 outside ``fg``); the relief is all 0 when ``fg`` is empty.
    """
    fg = p > threshold
    if fill_holes:
        fg = fill_mask_holes(fg)
    fg = remove_small_objects(fg, min_size)
    if not fg.any():
        return fg, np.zeros(fg.shape)
    dist = distance_to_background(fg) if distance is None else distance
    dist = dist * _holes_weigh_one(p, threshold) if p.dtype.kind == "f" else dist
    return fg, (ndi.gaussian_filter(dist, sigma) if sigma > 0 else dist) * fg


#: an object at least this convex is taken for one nucleus (the pseudo-label cluster rule's value, ``pseudolabel``)
ONE_NUCLEUS_SOLIDITY = 0.9
#: an object this many times its tile's median object area may hold several nuclei
SEVERAL_NUCLEI_AREA = 1.5


def resplit_irregular_objects(
    inst: np.ndarray,
    relief: np.ndarray,
    h: float,
    min_size: int = 30,
    min_depth: float = 0.5,
    solidity: float = ONE_NUCLEUS_SOLIDITY,
    rel_area: float = SEVERAL_NUCLEI_AREA,
    graph: BasinGraph | None = None,
    renumber: bool = True,
) -> np.ndarray:
    """Split again the objects that look like touching nuclei merged into one.

    One marker depth cannot suit every pair of touching nuclei: the neck between two large overlapping nuclei is
    shallower than ``h`` and they stay one object. Such an object is larger than its tile's typical one (more than
    ``rel_area`` × the median object area) and not convex (solidity below ``solidity``); a single nucleus is rarely
    both. Each such object is flooded again on its own relief with the marker depth halved (``h / 2``, ``h / 4``, ...
    down to ``min_depth``) until it falls into at least two parts of ``min_size`` pixels or more (smaller parts join
    their neighbours, so the mask does not change); one that never does is kept whole. Both limits are properties of
    the tile's own objects, so no threshold depends on a lab's stain or magnification; they were fixed before the rule
    was scored (docs/README.md, Performance 0.3.2).

    Flooding an object on its own relief needs no new flooding: its basins and saddles are those of the basin graph
    ``inst`` was cut from, so each depth is one more cut of that graph (:func:`labelfree.transforms.dynamics.cut_basins`
    with each object on its own). Without ``graph``, the objects' boxes are packed side by side on one small canvas
    (:func:`_packed_canvas`) and its graph is built once.

    Args:
        inst: ``(H, W)`` int instances ``0..n``.
        relief: ``(H, W)`` the relief they were flooded from (higher inside nuclei).
        h: the marker depth they were split with.
        min_size: the smallest part, in pixels.
        min_depth: the shallowest marker depth tried.
        solidity: objects at least this convex are left alone.
        rel_area: objects up to this many times the tile's median object area are left alone.
        graph: the basin graph of ``relief`` that ``inst`` was cut from (:func:`labelfree.transforms.dynamics.basin_graph`
            on the same mask, every object a union of its basins), as :func:`instances_from_map` has it.
        renumber: number the objects ``1..m``; ``False`` leaves the ids of the split objects unused (the objects keep
            their order), for a caller that renumbers anyway.

    Returns:
        ``(H, W)`` int32 instances ``1..m`` (with ``renumber=False``: ids in the same order, not all used).
    """
    areas = np.bincount(inst.ravel())
    median = _median_object_area(areas)
    if median is None:
        return inst.astype(np.int32, copy=False)
    large = areas > rel_area * median
    large[0] = False
    out = inst.astype(np.int32, copy=True)
    finish = partial(sequential_labels, min_size=1) if renumber else np.asarray
    if not large.any():
        return finish(out)
    ids, solid = solidities(np.where(large[inst], inst, 0))
    todo = ids[solid < solidity]
    if not todo.size:
        return finish(out)
    boxes = ndi.find_objects(inst)
    if graph is None:
        canvas_relief, canvas_mask, owner, windows = _packed_canvas(inst, relief, todo, boxes)
        graph = basin_graph(canvas_relief, canvas_mask)
    else:
        index = np.zeros(len(areas), dtype=np.int64)
        index[todo] = np.arange(1, todo.size + 1)
        owner, windows = index[inst], [boxes[label - 1] for label in todo.tolist()]
    # the objects' pixels as flat indices: every cut below is read on them only, not on the whole tile
    pixels = np.flatnonzero(owner)
    owner_at, basin_at = owner.ravel()[pixels], graph.basins.ravel()[pixels]
    basin_owner = np.zeros(len(graph.top), dtype=np.int64)
    basin_owner[basin_at] = owner_at
    waiting = np.ones(todo.size + 1, dtype=bool)  # objects not yet split, by their index in todo (1-based)
    waiting[0] = False
    found: dict[int, np.ndarray] = {}
    depth = h / 2
    while depth >= min_depth and waiting.any():
        lut = cut_basins(graph, depth, np.where(waiting[basin_owner], basin_owner, 0))
        parts = sequential_labels(lut[basin_at], min_size)
        split = _parts_of_objects(parts, owner_at, pixels, owner, windows)
        for i, local in split.items():
            found[int(todo[i - 1])] = local
            waiting[i] = False
        depth /= 2
    next_id = int(out.max()) + 1
    for label in sorted(found):  # new ids in label order, as one object at a time would give them
        parts = found[label]
        crop = out[boxes[label - 1]]
        obj = parts > 0
        crop[obj] = parts[obj] + next_id - 1
        next_id += int(parts.max())
    return finish(out)


def _packed_canvas(
    inst: np.ndarray, relief: np.ndarray, labels: np.ndarray, boxes: list
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """The objects ``labels`` of ``inst`` with their relief, packed in rows on a small canvas two background pixels
    apart, so no two touch and each has the basins and saddles it has on its own.

    Returns:
        ``(relief, mask, owner, windows)``: the canvas's relief and mask, the index (``1..len(labels)``) of the object
        each canvas pixel belongs to (0 between them), and each object's window on the canvas.
    """
    gap = 2
    boxes_of = [boxes[label - 1] for label in labels.tolist()]
    shapes = [(rows.stop - rows.start, cols.stop - cols.start) for rows, cols in boxes_of]
    width = max(max(w for _, w in shapes), int(np.sqrt(sum((a + gap) * (b + gap) for a, b in shapes))))
    origins, x, y, row_h = [], 0, 0, 0
    for hh, ww in shapes:  # shelf packing: left to right, a new row when the canvas width is reached
        if x + ww > width:
            x, y, row_h = 0, y + row_h + gap, 0
        origins.append((y, x))
        x, row_h = x + ww + gap, max(row_h, hh)
    canvas_relief = np.zeros((y + row_h, width), dtype=relief.dtype)
    canvas_mask = np.zeros(canvas_relief.shape, dtype=bool)
    owner = np.zeros(canvas_relief.shape, dtype=np.int64)
    windows = []
    for i, (label, box, (oy, ox), (hh, ww)) in enumerate(zip(labels.tolist(), boxes_of, origins, shapes)):
        obj = inst[box] == label
        win = (slice(oy, oy + hh), slice(ox, ox + ww))
        canvas_relief[win] = relief[box] * obj
        canvas_mask[win] = obj
        owner[win][obj] = i + 1
        windows.append(win)
    return canvas_relief, canvas_mask, owner, windows


def _parts_of_objects(
    parts: np.ndarray, owner_at: np.ndarray, pixels: np.ndarray, owner: np.ndarray, windows: list
) -> dict[int, np.ndarray]:
    """The objects that fell into two parts or more.

    Args:
        parts: ``(P,)`` part ``1..k`` of each of the objects' pixels, numbered in raster order of their markers
            (:func:`sequential_labels` of a cut), 0 where none (parts under the smallest size included).
        owner_at: ``(P,)`` index ``1..n`` of the object each of those pixels belongs to.
        pixels: ``(P,)`` their flat indices in ``owner``.
        owner: ``(H, W)`` index ``1..n`` of the object each pixel belongs to, 0 outside every object.
        windows: each object's box in ``owner``.

    Returns:
        for each split object's index: its box with parts ``1..k`` on the object's pixels (pixels between parts
        joined to the nearest part) and 0 elsewhere.
    """
    n_parts = int(parts.max(initial=0))
    part_owner = np.zeros(n_parts + 1, dtype=np.int64)
    part_owner[parts] = owner_at
    part_owner[0] = 0
    per_object = np.bincount(part_owner[1:], minlength=len(windows) + 1)
    split = np.flatnonzero(per_object >= 2)
    split = split[split > 0]
    if split.size == 0:
        return {}
    # each part's number within its object: parts are numbered in raster order of their markers, which keeps the
    # order within one object
    rank = np.zeros(n_parts + 1, dtype=np.int64)
    order = np.lexsort((np.arange(1, n_parts + 1), part_owner[1:]))
    firsts = np.searchsorted(part_owner[1:][order], part_owner[1:][order], side="left")
    rank[1:][order] = np.arange(n_parts) - firsts + 1
    ranked = np.zeros(owner.size, dtype=np.int64)
    ranked[pixels] = rank[parts]
    ranked = ranked.reshape(owner.shape)
    result = {}
    for i in split.tolist():
        win = windows[i - 1]
        obj = owner[win] == i
        local = np.where(obj, ranked[win], 0)
        if (local[obj] == 0).any():
            # pixels left between parts (flooding ties, parts under min_size) join the nearest part of the same
            # object: the mask stays the one the probability gave
            nearest = ndi.distance_transform_edt(local == 0, return_distances=False, return_indices=True)
            local = np.where(obj, local[nearest[0], nearest[1]], 0)
        result[i] = local
    return result


def sequential_labels(labels: np.ndarray, min_size: int = 1) -> np.ndarray:
    """Drop regions smaller than ``min_size`` pixels and number the rest ``1..n`` in order of their old labels.

    A lookup table over ``np.bincount``: linear in the pixels, where ``np.unique(..., return_inverse=True)`` sorts them.

    Args:
        labels: ``(H, W)`` non-negative integer labels, 0 = background.
        min_size: smallest region kept, in pixels.

    Returns:
        ``(H, W)`` int32 labels ``0..n``.
    """
    return _renumber_kept(labels, np.bincount(np.asarray(labels).ravel()) >= min_size)


class NucleiInstances(Transform):
    """Array transform ``(1, H, W)`` probability or mask → ``(1, H, W)`` int32 instances; see :func:`instances_from_map`."""

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        threshold: float = 0.5,
        min_size: int = 30,
        h: float = 2.0,
        sigma: float = 1.0,
        fill_holes: bool = True,
        resplit_irregular: bool = False,
        min_mean_prob: float = 0.0,
        min_rel_area: float = 0.0,
        contact_gap: int = 0,
    ):
        self.kwargs = dict(
            threshold=threshold,
            min_size=min_size,
            h=h,
            sigma=sigma,
            fill_holes=fill_holes,
            resplit_irregular=resplit_irregular,
            min_mean_prob=min_mean_prob,
            min_rel_area=min_rel_area,
            contact_gap=contact_gap,
        )

    def __call__(self, prob: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """``(1, H, W)`` or ``(H, W)`` map → ``(1, H, W)`` int32 instances, of the input's type (tensor in, tensor out)."""
        out = instances_from_map(prob, **self.kwargs)[None]
        return convert_to_dst_type(out, dst=prob, dtype=out.dtype)[0]


class NucleiInstancesd(MapTransform):
    """Dictionary twin of :class:`NucleiInstances`: reads each key, writes ``output_key`` (default ``{key}_inst``)."""

    backend = NucleiInstances.backend

    def __init__(self, keys: KeysCollection, output_key: str | None = None, allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.op = NucleiInstances(**kwargs)

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key or f"{key}_inst"] = self.op(d[key])
        return d


NucleiInstancesD = NucleiInstancesDict = NucleiInstancesd


class ProbabilityToInstancesd(MapTransform):
    """Foreground probability → instances, with an empty result on tiles without stained tissue.

    Reads ``keys`` (``(C, H, W)`` softmax; channel ``channel`` is the nucleus probability), writes ``inst_key``
    ``(1, H, W)`` int32 and ``seg_key`` ``(1, H, W)`` uint8 (0/255); a blank tile also gets ``note``
    (:data:`labelfree.transforms.stain.NO_TISSUE_NOTE`), which ``labelfree.engines.runs.FaultTolerantEvaluator`` prints.

    Args:
        image_key: the tile, for the blank-tile check (uint8, or the [0, 1] network input; see ``tensor_to_rgb``).
        distance_key: where a network's distance output is, in pixels (``(1, H, W)``,
            :class:`labelfree.transforms.edge_distance.DistanceOutputd`); when the data holds it, the instances' relief
            is that distance (``distance`` of :func:`instances_from_map`); ``None``: the distance to the background.
        min_tissue_fraction: below this fraction of tissue pixels the tile is blank and the result empty.
        glass_od: when set, pixels whose optical density (summed over RGB, averaged over 5 × 5) is below it are glass
            and get probability 0: a network trained on tiles full of tissue speckles empty glass with thousands of
            tiny "nuclei" (the slide path, where tiles at a tissue edge are half glass, sets 0.3; glass is about 0.1,
            the palest nuclei above 0.5).
        kwargs: passed to :func:`labelfree.transforms.instances.instances_from_map`.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str = "image",
        channel: int = 1,
        inst_key: str = "inst",
        seg_key: str = "seg",
        distance_key: str | None = "distance",
        min_tissue_fraction: float = MIN_TISSUE_FRACTION,
        glass_od: float | None = None,
        allow_missing_keys: bool = False,
        **kwargs,
    ):
        super().__init__(keys, allow_missing_keys)
        self.image_key, self.channel, self.inst_key, self.seg_key = image_key, channel, inst_key, seg_key
        self.distance_key = distance_key
        self.min_tissue_fraction, self.glass_od, self.kwargs = min_tissue_fraction, glass_od, kwargs

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        rgb = tensor_to_rgb(d[self.image_key])
        blank = not has_tissue(rgb, self.min_tissue_fraction)
        for key in self.key_iterator(d):
            prob = torch.as_tensor(d[key]).detach().cpu().float().numpy()[self.channel]
            if self.glass_od is not None and not blank:
                # the network may run at another scale than the tile's (labelfree.transforms.scale): glass is found
                # on the tile resampled to the probability's grid
                od = optical_density(resample_rgb(rgb, (prob.shape[1], prob.shape[0]))).sum(axis=-1)
                prob = np.where(ndi.uniform_filter(od, 5) < self.glass_od, 0.0, prob)
            distance = d.get(self.distance_key) if self.distance_key else None
            inst = (
                np.zeros(prob.shape, np.int32) if blank else instances_from_map(prob, distance=distance, **self.kwargs)
            )
            d[self.inst_key] = inst[None]
            d[self.seg_key] = ((inst > 0) * 255).astype(np.uint8)[None]
        if blank:
            d["note"] = NO_TISSUE_NOTE
        return d
