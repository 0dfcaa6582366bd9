"""Object-level purification of predicted nuclei, for self-training.

A network's own instances are mostly nuclei, but some objects are not: slivers along collagen or membranes, faint
smudges on stroma, ragged fragments. Trusting every pixel teaches the next round those mistakes again. Each object
is scored for nucleus-likeness *relative to the tile it comes from*, so no threshold depends on a lab's stain
strength or a magnification:

- size: area against the tile's median object area (slivers and specks are small);
- haematoxylin contrast: mean haematoxylin optical density inside the object minus that of a ring around it
  (outside every object), against the tile's median contrast (a nucleus is darker than what surrounds it);
- solidity: area over convex-hull area (nuclei are nearly convex; lace and fragments are not).

Objects that pass all three are kept as nuclei; the others, with a margin around them, are *ignored* by the loss,
neither nucleus nor background. The haematoxylin channel is the fixed Ruifrok–Johnston colour deconvolution
(scikit-image's ``rgb2hed``): only contrasts within one tile are compared, so the stain vectors need not be fitted.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type
from scipy import ndimage as ndi
from skimage.color import rgb2hed
from skimage.measure import regionprops

from labelfree.core.shape import solidities
from labelfree.transforms.instances import MIN_REL_AREA
from labelfree.transforms.io import tensor_to_rgb

__all__ = [
    "object_scores",
    "purify_instances",
    "uncertain_background",
    "PurifyInstances",
    "PurifyInstancesd",
    "PurifyInstancesD",
    "PurifyInstancesDict",
]


def object_scores(rgb: np.ndarray, inst: np.ndarray, ring: int = 4) -> dict[str, np.ndarray]:
    """Per-object size, haematoxylin contrast and solidity.

    Args:
        rgb: ``(H, W, 3)`` uint8 tile.
        inst: ``(H, W)`` instance map, 0 = background.
        ring: width in pixels of the ring around an object whose haematoxylin it is compared with.

    Returns:
        ``label``, ``area``, ``contrast`` (haematoxylin OD inside minus ring) and ``solidity``, each ``(n,)``.
    """
    inst = np.asarray(inst)
    hema = rgb2hed(rgb)[..., 0].astype(np.float32)
    fg = inst > 0
    ids, solidity = solidities(inst)
    solidity_of = dict(zip(ids.tolist(), solidity.tolist()))
    labels, areas, contrasts, solid = [], [], [], []
    for r in regionprops(inst):
        sl = tuple(slice(max(s.start - ring - 1, 0), s.stop + ring + 1) for s in r.slice)
        obj = inst[sl] == r.label
        around = ndi.binary_dilation(obj, iterations=ring) & ~fg[sl]
        inside = float(hema[sl][obj].mean())
        labels.append(r.label)
        areas.append(r.area)
        contrasts.append(inside - (float(hema[sl][around].mean()) if around.any() else inside))
        solid.append(solidity_of[r.label])
    return {
        "label": np.asarray(labels, dtype=np.int64),
        "area": np.asarray(areas, dtype=np.float64),
        "contrast": np.asarray(contrasts, dtype=np.float64),
        "solidity": np.asarray(solid, dtype=np.float64),
    }


def purify_instances(
    rgb: np.ndarray,
    inst: np.ndarray,
    min_rel_area: float = MIN_REL_AREA,
    min_rel_contrast: float = 0.5,
    min_solidity: float = 0.8,
    margin: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Split predicted nuclei into confident ones and ignored ones.

    Args:
        rgb: ``(H, W, 3)`` uint8 tile.
        inst: ``(H, W)`` instance map, 0 = background.
        min_rel_area: an object smaller than this fraction of the tile's median object area is not confident.
        min_rel_contrast: nor one whose haematoxylin contrast is below this fraction of the tile's median contrast.
        min_solidity: nor one less convex than this.
        margin: pixels around an ignored object that are ignored too (its border is as uncertain as its inside).

    Returns:
        ``kept``: ``(H, W)`` instance map of the confident nuclei (ids unchanged);
        ``ignore``: ``(H, W)`` bool, the pixels the loss should leave out (never on a kept nucleus).
    """
    inst = np.asarray(inst)
    s = object_scores(rgb, inst)
    if len(s["label"]) == 0:
        return np.zeros_like(inst), np.zeros(inst.shape, dtype=bool)
    rel_area = s["area"] / np.median(s["area"])
    # a tile of pale nuclei has a small median contrast; the floor keeps the ratio meaningful on it
    rel_contrast = s["contrast"] / max(float(np.median(s["contrast"])), 1e-3)
    confident = (rel_area >= min_rel_area) & (rel_contrast >= min_rel_contrast) & (s["solidity"] >= min_solidity)
    lut = np.zeros(int(inst.max()) + 1, dtype=bool)
    lut[s["label"][confident]] = True
    keep = lut[inst] & (inst > 0)
    dropped = (inst > 0) & ~keep
    ignore = ndi.binary_dilation(dropped, iterations=margin) if margin > 0 else dropped
    return np.where(keep, inst, 0), ignore & ~keep


def uncertain_background(
    rgb: np.ndarray, inst: np.ndarray, kept: np.ndarray, ignore: np.ndarray, ring: int = 4, sigma: float = 1.0
) -> np.ndarray:
    """Background pixels too dark to be taught as background: closer in haematoxylin to the tile's confident nuclei
    than to what surrounds them.

    A teacher's mask misses nuclei (pale, vesicular, out of focus); outside its objects every pixel would be taught as
    confident background, so the student learns the teacher's misses. A pixel outside every object whose haematoxylin
    (smoothed at ``sigma``) is above the level halfway between the median of the confident nuclei and the median of
    the rings around them is left to the student instead: neither nucleus nor background.

    Args:
        rgb: ``(H, W, 3)`` uint8 tile.
        inst: ``(H, W)`` the teacher's instance map (every object).
        kept: ``(H, W)`` the confident nuclei (:func:`purify_instances`).
        ignore: ``(H, W)`` bool, pixels already left out.
        ring: width in pixels of the ring around the confident nuclei.
        sigma: Gaussian smoothing of the haematoxylin (pixels).

    Returns:
        ``(H, W)`` bool, the background pixels to leave out as well (none when the tile has no confident nucleus or
        no ring pixel).
    """
    fg = np.asarray(inst) > 0
    nuclei = np.asarray(kept) > 0
    around = ndi.binary_dilation(nuclei, iterations=ring) & ~fg
    if not nuclei.any() or not around.any():
        return np.zeros(fg.shape, dtype=bool)
    hema = ndi.gaussian_filter(rgb2hed(rgb)[..., 0].astype(np.float32), sigma)
    level = 0.5 * (float(np.median(hema[nuclei])) + float(np.median(hema[around])))
    return ~fg & ~np.asarray(ignore, dtype=bool) & (hema > level)


class PurifyInstances(Transform):
    """Array transform: ``(3, H, W)`` RGB and ``(1, H, W)`` instance map → ``(2, H, W)``: channel 0 the confident
    instances, channel 1 the ignore mask (1 = left out of the loss); see :func:`purify_instances`.

    Args:
        min_rel_area, min_rel_contrast, min_solidity, margin: see :func:`purify_instances`.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        min_rel_area: float = MIN_REL_AREA,
        min_rel_contrast: float = 0.5,
        min_solidity: float = 0.8,
        margin: int = 2,
    ):
        self.kwargs = dict(
            min_rel_area=min_rel_area, min_rel_contrast=min_rel_contrast, min_solidity=min_solidity, margin=margin
        )

    def __call__(self, img: np.ndarray | torch.Tensor, inst: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """
        Args:
            img: ``(3, H, W)`` RGB, uint8 or float in [0, 1].
            inst: ``(1, H, W)`` instance map.

        Returns:
            ``(2, H, W)`` int32 of ``inst``'s type: confident instances, ignore mask.
        """
        lab = np.asarray(inst.detach().cpu() if isinstance(inst, torch.Tensor) else inst)
        if lab.ndim != 3 or lab.shape[0] != 1:
            raise ValueError(f"expected a (1, H, W) instance map, got shape {lab.shape}")
        kept, ignore = purify_instances(tensor_to_rgb(img), lab[0].astype(np.int64), **self.kwargs)
        out = np.stack([kept, ignore]).astype(np.int32)
        return convert_to_dst_type(out, dst=inst, dtype=out.dtype)[0]


class PurifyInstancesd(MapTransform):
    """Dictionary twin of :class:`PurifyInstances`: reads ``image_key`` and each key's instance map, writes the
    confident instances back to the key and the ignore mask to ``{key}_ignore``.

    Args:
        keys: instance-map keys.
        image_key: the RGB image.
        kwargs: :class:`PurifyInstances` arguments.
    """

    backend = PurifyInstances.backend

    def __init__(self, keys: KeysCollection, image_key: str = "image", allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.op = PurifyInstances(**kwargs)

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        d = dict(data)
        for key in self.key_iterator(d):
            out = self.op(d[self.image_key], d[key])
            d[key], d[f"{key}_ignore"] = out[:1], out[1:]
        return d


PurifyInstancesD = PurifyInstancesDict = PurifyInstancesd
