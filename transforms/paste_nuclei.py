"""Synthetic touching nuclei: confident nuclei copied next to others, so a network sees labelled contacts.

Self-training learns what its teacher's instances hold. Where nuclei touch, the teacher mostly returns one merged
object, which object-level purification then leaves out of the loss, so the student is never shown the line between
two touching nuclei and its probability has no dip there for the watershed to split (docs/README.md, Performance:
28 % of MoNuSeg's nuclei share a predicted object). Copy-paste augmentation, as used for instance segmentation
(Ghiasi et al., "Simple Copy-Paste", CVPR 2021), makes such examples from what the teacher does get right: a
confident nucleus (pixels and mask) is moved until it touches, or slightly overlaps, another confident nucleus of the
same tile, and the two keep separate instance ids, so the soft labels and Voronoi tri-labels made from the instances
mark the contact. Nothing is pasted onto pixels the loss ignores or onto a third nucleus, and the donor's rim is
blended half-and-half with what it covers, so a hard paste edge does not tell the network where the contact is.
Donors are typical nuclei of the tile (½–2 × its median area); all sizes are relative to the tile, no ground truth is
read.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import TransformBackends
from scipy import ndimage as ndi

from labelfree.core.centroids import instance_centroids

__all__ = [
    "paste_touching_nuclei",
    "PasteTouchingNuclei",
    "PasteTouchingNucleid",
    "PasteTouchingNucleiD",
    "PasteTouchingNucleiDict",
]

#: donors are nuclei of this range of the tile's median area: a typical nucleus, not a sliver or a merged pair
DONOR_AREA = (0.5, 2.0)


def paste_touching_nuclei(
    rgb: np.ndarray,
    inst: np.ndarray,
    ignore: np.ndarray | None = None,
    fraction: float = 0.15,
    max_overlap: float = 0.25,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Copy confident nuclei of a tile next to others, touching them.

    Args:
        rgb: ``(H, W, 3)`` uint8 tile.
        inst: ``(H, W)`` int instance map of the confident nuclei, 0 = background.
        ignore: ``(H, W)`` bool, pixels the loss leaves out (nothing is pasted on them); ``None``: none.
        fraction: nuclei pasted, as a fraction of the tile's nuclei (rounded to a whole number, so a tile with few
            nuclei may get none); a paste that finds no free spot is tried again, at most ``20 ×`` that number of times.
        max_overlap: the largest overlap of a donor with the nucleus it is pasted against, as a fraction of the
            donor's equivalent radius (0: the two just touch); each paste draws one in ``[0, max_overlap]``.
        rng: random generator (``numpy.random.default_rng(0)`` if ``None``).

    Returns:
        ``(rgb, inst)``: the new ``(H, W, 3)`` uint8 tile and ``(H, W)`` int32 instances, the pasted nuclei numbered
        after the existing ones. Each pasted nucleus covers the part of its host it overlaps. Inputs are not modified;
        a tile with fewer than two nuclei comes back unchanged.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    inst = np.asarray(inst)
    out_rgb, out_inst = rgb.copy(), inst.astype(np.int32, copy=True)
    areas = np.bincount(out_inst.ravel())
    ids = np.flatnonzero(areas)
    ids = ids[ids > 0]
    if ids.size < 2:
        return out_rgb, out_inst
    median = float(np.median(areas[ids]))
    donors = ids[(areas[ids] >= DONOR_AREA[0] * median) & (areas[ids] <= DONOR_AREA[1] * median)]
    if donors.size == 0:
        return out_rgb, out_inst
    boxes = ndi.find_objects(out_inst)
    centre_of = dict(zip(ids.tolist(), instance_centroids(out_inst, ids)))
    blocked = out_inst > 0
    if ignore is not None:
        blocked |= np.asarray(ignore, dtype=bool)
    height, width = out_inst.shape
    target = int(round(fraction * ids.size))
    next_id = int(out_inst.max()) + 1
    placed = 0
    # most draws on a crowded tile find no free spot, so a donor is posed (turned, flipped, measured, its halo grown)
    # once per pose, not once per draw; a host that loses pixels to a paste is posed afresh when next drawn as a donor
    poses: dict[int, dict[tuple[int, bool], _Pose]] = {}
    for _ in range(20 * target):
        if placed >= target:
            break
        donor, host = int(rng.choice(donors)), int(rng.choice(ids))
        if donor == host:
            continue
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        pose = poses.setdefault(donor, {}).get((turns, flip))
        if pose is None:
            pose = poses[donor][(turns, flip)] = _pose(out_inst, rgb, boxes[donor - 1], donor, turns, flip)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        step = np.array([np.sin(angle), np.cos(angle)])
        overlap = rng.uniform(0.0, max_overlap) * pose.radius
        mask = pose.mask
        spot = _touching_spot(
            out_inst, host, boxes[host - 1], mask, centre_of[host] - pose.offset, step, overlap, pose.probe
        )
        if spot is None:
            continue
        y, x = spot
        h, w = mask.shape
        if y < 1 or x < 1 or y + h > height - 1 or x + w > width - 1:
            continue
        region = (slice(y, y + h), slice(x, x + w))
        # a one-pixel halo keeps the donor off every nucleus but its host and off ignored pixels
        under = out_inst[region]
        halo = pose.halo()
        if (blocked[region] & halo & (under != host)).any():
            continue
        depth = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        alpha = np.clip(depth / 2.0, 0.0, 1.0)[..., None]  # 0.5 on the rim, 1 inside
        dest = out_rgb[region]
        blended = alpha * pose.pixels + (1.0 - alpha) * dest
        dest[mask] = np.round(blended[mask]).astype(np.uint8)
        under[mask] = next_id
        blocked[region] |= halo
        poses.pop(host, None)
        next_id += 1
        placed += 1
    return out_rgb, out_inst


class _Pose:
    """A donor turned and flipped: its mask and pixels, the mask's mean pixel and equivalent radius, and its one-pixel
    halo, grown when first asked for (most draws never get that far)."""

    def __init__(self, mask: np.ndarray, pixels: np.ndarray):
        self.mask, self.pixels = mask, pixels
        self.offset = np.argwhere(mask).mean(axis=0)
        self.radius = np.sqrt(mask.sum() / np.pi)
        r, c = np.round(self.offset).astype(int).tolist()
        self.probe = (r, c) if mask[r, c] else None  # a pixel of the donor near its middle
        self._halo: np.ndarray | None = None

    def halo(self) -> np.ndarray:
        if self._halo is None:
            self._halo = ndi.binary_dilation(self.mask, iterations=1, border_value=0)
        return self._halo


def _pose(inst: np.ndarray, rgb: np.ndarray, box: tuple[slice, slice], donor: int, turns: int, flip: bool) -> _Pose:
    """The donor ``donor`` (its bounding box ``box``) turned ``turns`` quarter turns, then mirrored when ``flip``."""
    mask, pixels = np.rot90(inst[box] == donor, turns), np.rot90(rgb[box], turns)
    if flip:
        mask, pixels = mask[:, ::-1], pixels[:, ::-1]
    return _Pose(mask, pixels)


def _touching_spot(
    inst: np.ndarray,
    host: int,
    host_box: tuple[slice, slice],
    mask: np.ndarray,
    start: np.ndarray,
    step: np.ndarray,
    overlap: float,
    probe: tuple[int, int] | None = None,
) -> tuple[int, int] | None:
    """Top-left corner where ``mask``, moved from ``start`` along ``step``, first clears the host, moved back by
    ``overlap`` pixels; ``None`` when it leaves the tile first.

    The host's pixels all lie in its bounding box ``host_box`` (pastes only take pixels from a host), so each step
    compares the donor with the host only where the donor's window meets that box, and a window beside the box clears
    the host without comparing anything. ``probe``, a pixel of ``mask``: while it lies on the host, the two overlap,
    and the step needs no comparison either (the first steps, the donor's middle on the host's)."""
    height, width = inst.shape
    h, w = mask.shape
    y0, y1, x0, x1 = host_box[0].start, host_box[0].stop, host_box[1].start, host_box[1].stop
    own = inst[host_box] == host
    corners = np.round(start + np.arange(4 * max(h, w) + 4)[:, None] * step).astype(int).tolist()
    for t, (y, x) in enumerate(corners):
        if y < 0 or x < 0 or y + h > height or x + w > width:
            return None
        if probe is not None:
            pr, pc = y + probe[0] - y0, x + probe[1] - x0
            if 0 <= pr < y1 - y0 and 0 <= pc < x1 - x0 and own[pr, pc]:
                continue
        top, bottom, left, right = max(y, y0), min(y + h, y1), max(x, x0), min(x + w, x1)
        if (
            top >= bottom
            or left >= right
            or not (
                mask[top - y : bottom - y, left - x : right - x] & own[top - y0 : bottom - y0, left - x0 : right - x0]
            ).any()
        ):
            y, x = np.round(start + max(t - 1 - overlap, 0.0) * step).astype(int)
            return int(y), int(x)
    return None


class PasteTouchingNuclei(Randomizable):
    """Array transform: ``(3, H, W)`` uint8 RGB and its ``(H, W)`` instances → the same with confident nuclei pasted
    against others (:func:`paste_touching_nuclei`).

    Args:
        fraction: nuclei pasted, as a fraction of the tile's nuclei.
        max_overlap: largest overlap with the host, as a fraction of the donor's equivalent radius.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, fraction: float = 0.15, max_overlap: float = 0.25) -> None:
        self.fraction, self.max_overlap = fraction, max_overlap

    def randomize(self, data: None = None) -> None:
        self._seed = int(self.R.randint(2**31))

    def __call__(
        self, image: np.ndarray, inst: np.ndarray, ignore: np.ndarray | None = None, randomize: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Args: ``image`` ``(3, H, W)`` uint8, ``inst`` ``(H, W)`` int, ``ignore`` ``(H, W)`` bool or ``None``.

        Returns: ``(image, inst)``, ``(3, H, W)`` uint8 and ``(H, W)`` int32."""
        if randomize:
            self.randomize()
        rgb, out = paste_touching_nuclei(
            np.ascontiguousarray(np.moveaxis(np.asarray(image), 0, -1)),
            inst,
            ignore,
            self.fraction,
            self.max_overlap,
            np.random.default_rng(self._seed),
        )
        return np.ascontiguousarray(np.moveaxis(rgb, -1, 0)), out


class PasteTouchingNucleid(Randomizable, MapTransform):
    """Dictionary twin of :class:`PasteTouchingNuclei`: ``image_key`` ``(3, H, W)`` uint8 and ``inst_key`` ``(H, W)``
    are replaced; ``ignore_key`` (optional, ``(H, W)`` bool) is read."""

    backend = PasteTouchingNuclei.backend

    def __init__(
        self,
        image_key: str = "image",
        inst_key: str = "inst",
        ignore_key: str | None = "ignore",
        fraction: float = 0.15,
        max_overlap: float = 0.25,
        allow_missing_keys: bool = False,
    ) -> None:
        keys: KeysCollection = [image_key, inst_key]
        super().__init__(keys, allow_missing_keys)
        self.image_key, self.inst_key, self.ignore_key = image_key, inst_key, ignore_key
        self.paste = PasteTouchingNuclei(fraction, max_overlap)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.paste.set_random_state(seed, state)
        return self

    def randomize(self, data: None = None) -> None:
        self.paste.randomize()

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        d = dict(data)
        self.randomize()
        ignore = d.get(self.ignore_key) if self.ignore_key else None
        d[self.image_key], d[self.inst_key] = self.paste(d[self.image_key], d[self.inst_key], ignore, randomize=False)
        return d


PasteTouchingNucleiD = PasteTouchingNucleiDict = PasteTouchingNucleid
