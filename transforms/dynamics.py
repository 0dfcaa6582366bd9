"""Watershed from the maxima whose dynamic is at least ``h``, in one pass over the pixels.

The classic recipe (``skimage.morphology.h_maxima`` for the markers, then a marker-controlled watershed) costs a grey
reconstruction of the whole relief (a sort of every pixel, or one call per connected component) and a second flooding.
Here the relief is cut once into the basins of *all* its regional maxima; the basin graph that cut leaves (one node per
maximum, one edge per pair of touching basins, weighted by their saddle: the highest pass between them) is then small
enough (a few thousand edges on a 1000² tile) for two union-find sweeps over the edges, highest saddle first:

1. **dynamics**: when two groups of basins meet at saddle ``s``, the lower group's top maximum has dynamic
   ``top - s``; it is a marker when that is at least ``h`` (the h-maxima criterion). A component's highest maximum
   competes with the background (0), as ``h_maxima`` on a component does.
2. **minimum spanning forest**: groups merge along the same edges unless both already hold a marker, so each basin
   joins the marker it would be flooded from (the watershed cut of the markers, Cousty et al., TPAMI 2009).

Markers are the same pixels as ``h_maxima``'s (checked in the tests); a basin whose own maximum is dropped goes whole to
one marker, where a second flooding could share it between two: on the 30 MoNuSeg tiles this changes AJI by < 0.0001.
The Python loops run over graph edges, not pixels.

The basins are not flooded but climbed (:func:`ascent_basins`): each pixel points to its highest 8-neighbour and the
pointers are followed by pointer doubling, a handful of vectorised gathers instead of a priority-queue flood. Every
pixel's path to its maximum rises and stays in its basin, so the saddles between basins, and with them the dynamics
and the markers, are those of any watershed of the relief; only the basin boundaries move, by about a pixel where two
basins meet (flooding puts them where the two floods meet, climbing on the steepest slope).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import local_maxima
from skimage.segmentation import watershed

__all__ = ["BasinGraph", "ascent_basins", "basin_graph", "basin_saddles", "cut_basins", "dynamics_watershed"]

#: the four 8-neighbour offsets that visit every neighbouring pixel pair once
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))
#: all eight neighbour offsets
_NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)


def ascent_basins(relief: np.ndarray, mask: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """Label every pixel of ``mask`` with the marker its steepest-ascent path reaches.

    Each pixel points to its highest 8-neighbour inside ``mask`` when that one is strictly higher; marker pixels (the
    regional maxima) point to themselves. Following the pointers by doubling takes about log2 of the longest path
    (a nucleus radius) vectorised gathers over the mask's pixels. A pixel that ends on a flat, non-maximal plateau
    (no higher neighbour, not a marker: exact ties of the relief, a few pixels a tile on a binary mask's distance map,
    none on a probability-weighted one) is flooded from the labelled pixels around it instead, as a watershed would.

    Args:
        relief: ``(H, W)`` float heights.
        mask: ``(H, W)`` bool; pixels outside are neither labelled nor climbed through.
        markers: ``(H, W)`` int labels of the regional maxima of ``relief`` in ``mask`` (0 elsewhere); every
            regional maximum must be marked, or the pixels that climb to it are flooded from its neighbours.

    Returns:
        ``(H, W)`` int64 labels, 0 outside ``mask``.
    """
    h, w = mask.shape
    width = w + 2
    padded = np.full((h + 2, width), -np.inf)
    padded[1:-1, 1:-1][mask] = relief[mask]  # the frame and the outside are never climbed to
    heights = padded.ravel()
    inner = np.flatnonzero(mask)  # the mask's pixels in raster order, in the image and (below) in the padded frame
    pix = inner + 2 * (inner // w) + width + 1
    best, target = heights[pix], pix.copy()
    for dy, dx in _NEIGHBOURS:  # the highest neighbour, if higher than the pixel itself (ties: the first)
        nb = pix + (dy * width + dx)
        up_heights = heights[nb]
        up = up_heights > best
        np.copyto(best, up_heights, where=up)
        np.copyto(target, nb, where=up)
    seeds = np.asarray(markers).ravel()[inner].astype(np.int64)
    position = np.full(heights.size, -1, dtype=np.int64)
    position[pix] = np.arange(pix.size)
    pointer = position[target]
    marked = np.flatnonzero(seeds > 0)
    pointer[marked] = marked  # a maximum's plateau is one marker: its pixels stay where they are
    while True:  # pointer doubling: after k steps each pixel points 2**k steps up its path
        nxt = pointer[pointer]
        if np.array_equal(nxt, pointer):
            break
        pointer = nxt
    labels = np.zeros(h * w, dtype=np.int64)
    labels[inner] = seeds[pointer]
    labels = labels.reshape(h, w)
    left = mask & (labels == 0)
    if left.any():
        labels = _flood_left(relief, mask, labels, left)
    return labels


def _flood_left(relief: np.ndarray, mask: np.ndarray, labels: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Flood the unlabelled pixels ``left`` of ``mask`` from the labelled ones, in a small window around each group
    (2 px beyond it), and over the whole mask if a group has no labelled pixel within that window."""
    groups, _ = ndi.label(left, structure=np.ones((3, 3), dtype=bool))
    for rows, cols in ndi.find_objects(groups):
        win = (slice(max(rows.start - 2, 0), rows.stop + 2), slice(max(cols.start - 2, 0), cols.stop + 2))
        flooded = watershed(-relief[win], markers=labels[win], mask=mask[win], connectivity=1)
        labels[win] = np.where(left[win], flooded, labels[win])
    if (mask & (labels == 0)).any():
        labels = watershed(-relief, markers=labels, mask=mask, connectivity=1)
    return labels


def basin_saddles(labels: np.ndarray, relief: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The saddle of every pair of touching regions.

    Args:
        labels: ``(H, W)`` region labels, 0 = outside.
        relief: ``(H, W)`` heights.

    Returns:
        ``(a, b, saddle)``: 1-D arrays, one entry per pair of 8-neighbouring regions ``a < b``, with the highest
        ``min(relief[p], relief[q])`` over neighbouring pixels ``p`` in ``a`` and ``q`` in ``b``.
    """
    h, w = labels.shape
    lo, hi, lev = [], [], []
    for dy, dx in _OFFSETS:
        src = (slice(0, h - dy), slice(max(-dx, 0), w - max(dx, 0)))
        dst = (slice(dy, h), slice(max(dx, 0), w - max(-dx, 0)))
        a, b = labels[src], labels[dst]
        cut = (a != b) & (a > 0) & (b > 0)
        a, b = a[cut], b[cut]
        lo.append(np.minimum(a, b))
        hi.append(np.maximum(a, b))
        lev.append(np.minimum(relief[src][cut], relief[dst][cut]))
    lo, hi, lev = np.concatenate(lo).astype(np.int64), np.concatenate(hi).astype(np.int64), np.concatenate(lev)
    if lo.size == 0:
        return lo, hi, lev
    key = lo * (int(hi.max()) + 1) + hi
    order = np.lexsort((lev, key))  # by pair, then by level: the last entry of each pair is its saddle
    last = np.r_[key[order][1:] != key[order][:-1], True]
    pick = order[last]
    return lo[pick], hi[pick], lev[pick]


def _root(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _markers_by_dynamics(top: np.ndarray, a: np.ndarray, b: np.ndarray, saddle: np.ndarray, h: float) -> np.ndarray:
    """Which maxima (``1..n``, heights ``top``) have dynamic >= ``h``; edges sorted by decreasing saddle."""
    n = len(top) - 1
    parent = list(range(n + 1))
    height = [float(t) for t in top]
    tied: list[list[int]] = [[i] for i in range(n + 1)]  # the group's maxima at the group's height
    keep = [True] * (n + 1)
    for i, j, s in zip(a.tolist(), b.tolist(), saddle.tolist()):
        ri, rj = _root(parent, i), _root(parent, j)
        if ri == rj:
            continue
        if height[ri] < height[rj]:
            ri, rj = rj, ri
        if height[ri] > height[rj]:
            if height[rj] - s < h:
                for m in tied[rj]:
                    keep[m] = False
        else:  # equal tops: neither is below the other, as in h_maxima
            tied[ri] = tied[ri] + tied[rj]
        parent[rj] = ri
    for r in range(1, n + 1):
        if parent[r] == r and height[r] < h:  # a component's highest maximum, against the background
            for m in tied[r]:
                keep[m] = False
    keep[0] = False
    return np.asarray(keep)


def _forest(keep: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Label of every basin: the marker its group reaches first (edges by decreasing saddle), or a new label for a
    group without a marker (a component too shallow for any)."""
    n = len(keep) - 1
    parent = list(range(n + 1))
    mark = [i if keep[i] else 0 for i in range(n + 1)]
    for i, j in zip(a.tolist(), b.tolist()):
        ri, rj = _root(parent, i), _root(parent, j)
        if ri == rj or (mark[ri] and mark[rj]):
            continue
        parent[rj] = ri
        mark[ri] = mark[ri] or mark[rj]
    roots = np.fromiter((_root(parent, i) for i in range(n + 1)), dtype=np.int64, count=n + 1)
    marks = np.asarray(mark, dtype=np.int64)[roots]
    lut = np.where(marks > 0, marks, roots + n + 1)
    lut[0] = 0
    return lut


class BasinGraph(NamedTuple):
    """The basins of every regional maximum of a relief and how they touch (:func:`basin_graph`).

    Attributes:
        basins: ``(H, W)`` int64 basin of each pixel, ``1..n`` (the label of the maximum it climbs to), 0 outside the
            mask.
        top: ``(n + 1,)`` height of each basin's maximum (index 0 unused).
        a, b, saddle: one entry per pair of touching basins ``a < b`` and their saddle, highest saddle first.
    """

    basins: np.ndarray
    top: np.ndarray
    a: np.ndarray
    b: np.ndarray
    saddle: np.ndarray


def basin_graph(relief: np.ndarray, mask: np.ndarray) -> BasinGraph:
    """Cut ``relief`` inside ``mask`` into the basins of all its regional maxima and list their saddles.

    Args:
        relief: ``(H, W)`` float heights, higher = more inside an object.
        mask: ``(H, W)`` bool; pixels outside belong to no basin.

    Returns:
        the :class:`BasinGraph`; :func:`cut_basins` turns it into regions at any marker depth without touching the
        pixels again.
    """
    relief = np.asarray(relief)
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        empty = np.zeros(0, dtype=np.int64)
        return BasinGraph(np.zeros(mask.shape, dtype=np.int64), np.zeros(1), empty, empty, np.zeros(0))
    peaks = local_maxima(relief, connectivity=2, allow_borders=True) & mask
    peak_labels, n = ndi.label(peaks, structure=np.ones((3, 3), dtype=bool))
    top = np.zeros(n + 1)
    top[peak_labels[peaks]] = relief[peaks]  # a plateau has one height
    basins = ascent_basins(relief, mask, peak_labels)
    a, b, saddle = basin_saddles(basins, relief)
    order = np.argsort(-saddle, kind="stable")
    return BasinGraph(basins, top, a[order], b[order], saddle[order])


def cut_basins(graph: BasinGraph, h: float, owner: np.ndarray | None = None) -> np.ndarray:
    """The region of every basin of ``graph`` at marker depth ``h``: a lookup table to index with ``graph.basins``.

    Args:
        graph: from :func:`basin_graph`.
        h: minimal dynamic of a maximum for it to seed its own region.
        owner: optional ``(n + 1,)`` int, the object each basin belongs to (0: none). Given, each object is cut on its
            own: only saddles between basins of one object count, an object's highest maximum competes with the
            background, and basins of no object get 0. This is the cut the object would get as the whole mask of its
            own relief, since its basins and saddles are the same there.

    Returns:
        ``(n + 1,)`` int64 region label of each basin: the label of its marker's basin, or a label above ``n`` for a
        part that holds no marker (a component shallower than ``h``); 0 for index 0.
    """
    if owner is None:
        keep = _markers_by_dynamics(graph.top, graph.a, graph.b, graph.saddle, h)
        return _forest(keep, graph.a, graph.b)
    n = len(graph.top) - 1
    ids = np.flatnonzero(owner)
    ids = ids[ids > 0]
    compact = np.zeros(n + 1, dtype=np.int64)
    compact[ids] = np.arange(1, ids.size + 1)
    inside = (owner[graph.a] == owner[graph.b]) & (owner[graph.a] > 0)
    a, b = compact[graph.a[inside]], compact[graph.b[inside]]
    keep = _markers_by_dynamics(np.r_[0.0, graph.top[ids]], a, b, graph.saddle[inside], h)
    sub = _forest(keep, a, b)
    # the compact labels back to the basins' own: markers 1..m, then unmarked roots m+2..2m+1 (as _forest numbers them)
    back = np.concatenate([[0], ids, [0], ids + n + 1]).astype(np.int64)
    lut = np.zeros(n + 1, dtype=np.int64)
    lut[ids] = back[sub[1:]]
    return lut


def dynamics_watershed(relief: np.ndarray, mask: np.ndarray, h: float) -> np.ndarray:
    """Watershed of ``relief`` inside ``mask`` from its maxima of dynamic >= ``h``.

    Args:
        relief: ``(H, W)`` float heights (e.g. a distance map), higher = more inside an object.
        mask: ``(H, W)`` bool; the relief is flooded inside it only.
        h: minimal depth of the saddle between a maximum and any higher one for the maximum to seed its own region.

    Returns:
        ``(H, W)`` int64 labels, 0 outside ``mask``; not consecutive. A component with no maximum of dynamic >= ``h``
        (its peak is lower than ``h``) is one region.
    """
    graph = basin_graph(relief, mask)
    return cut_basins(graph, h)[graph.basins]
