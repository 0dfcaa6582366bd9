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
    centres = np.asarray(ndi.center_of_mass(np.ones_like(out_inst), out_inst, ids))
    centre_of = {int(i): c for i, c in zip(ids, centres)}
    blocked = out_inst > 0
    if ignore is not None:
        blocked |= np.asarray(ignore, dtype=bool)
    height, width = out_inst.shape
    target = int(round(fraction * ids.size))
    next_id = int(out_inst.max()) + 1
    placed = 0
    for _ in range(20 * target):
        if placed >= target:
            break
        donor, host = int(rng.choice(donors)), int(rng.choice(ids))
        if donor == host:
            continue
        box = boxes[donor - 1]
        mask = out_inst[box] == donor
        pixels = rgb[box]
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        mask, pixels = np.rot90(mask, turns), np.rot90(pixels, turns)
        if flip:
            mask, pixels = mask[:, ::-1], pixels[:, ::-1]
        offset = np.argwhere(mask).mean(axis=0)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        step = np.array([np.sin(angle), np.cos(angle)])
        radius = np.sqrt(mask.sum() / np.pi)
        overlap = rng.uniform(0.0, max_overlap) * radius
        spot = _touching_spot(out_inst, host, mask, centre_of[host] - offset, step, overlap)
        if spot is None:
            continue
        y, x = spot
        h, w = mask.shape
        if y < 1 or x < 1 or y + h > height - 1 or x + w > width - 1:
            continue
        region = (slice(y, y + h), slice(x, x + w))
        # a one-pixel halo keeps the donor off every nucleus but its host and off ignored pixels
        halo = ndi.binary_dilation(mask, iterations=1, border_value=0)
        under = out_inst[region]
        if (blocked[region] & halo & (under != host)).any():
            continue
        depth = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        alpha = np.clip(depth / 2.0, 0.0, 1.0)[..., None]  # 0.5 on the rim, 1 inside
        dest = out_rgb[region]
        blended = alpha * pixels + (1.0 - alpha) * dest
        dest[mask] = np.round(blended[mask]).astype(np.uint8)
        under[mask] = next_id
        blocked[region] |= halo
        next_id += 1
        placed += 1
    return out_rgb, out_inst


def _touching_spot(
    inst: np.ndarray, host: int, mask: np.ndarray, start: np.ndarray, step: np.ndarray, overlap: float
) -> tuple[int, int] | None:
    """Top-left corner where ``mask``, moved from ``start`` along ``step``, first clears the host, moved back by
    ``overlap`` pixels; ``None`` when it leaves the tile first."""
    height, width = inst.shape
    h, w = mask.shape
    for t in range(0, 4 * max(h, w) + 4):
        y, x = np.round(start + t * step).astype(int)
        if y < 0 or x < 0 or y + h > height or x + w > width:
            return None
        if not (mask & (inst[y : y + h, x : x + w] == host)).any():
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
