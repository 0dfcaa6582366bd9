"""The label-free nuclei pseudo-label pipeline of SSimNet, as one transform.

stain separation (Vahadane) → haematoxylin-only RGB → CIELAB → fuzzy c-means (nuclei = darkest cluster) →
active-contour smoothing → small-object removal and hole filling → watershed instances.

Three choices differ from a literal reading of the paper, all label-free and all switchable:

* the number of clusters is chosen per tile (``n_clusters="auto"``, the default). With two clusters (the paper) the
  nuclei cluster of a pale, vesicular tile holds whole nuclei, but on a dense or stroma-rich tile it also swallows
  haematoxylin-tinted cytoplasm and merges neighbours; with three (the DCGN paper's "redundant class") the third
  cluster takes those pixels, but pale nuclei shrink to their chromatin. Both are computed and the two-cluster
  mask is kept only when its objects look clearly more like nuclei: a mean solidity (area / convex-hull area) higher
  by :data:`SOLIDITY_MARGIN`. Lace, slivers and merged clumps are not convex; whole nuclei are. The kept mask is then
  split at the three-cluster instances (:func:`split_at_markers`), which separate touching nuclei better, except
  where a component is as convex as one nucleus: that stays whole, so a pale nucleus is not cut at its chromatin.
  ``n_clusters=2`` or ``3`` fixes the count.
* the active contour runs on the FCM nuclei membership (``contour_on="membership"``) rather than on L*: Chan–Vese
  with a global two-region model moves the boundary to the midpoint of "nuclei" and "everything else", which undoes
  the clustering; on the membership it only smooths the FCM boundary, the "smoothing operation" the paper asks for.
  ``contour_on="lightness"`` is the literal variant.

A tile without stained tissue yields an empty mask (documented fallback), never an exception.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from functools import partial
from typing import NamedTuple

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from labelfree.core.distance import distance_to_background
from labelfree.core.imageio import as_rgb_uint8
from labelfree.core.parallel import side_by_side
from labelfree.core.shape import solidities
from labelfree.transforms.contour import ActiveContour, fill_mask_holes
from labelfree.transforms.fcm import FuzzyCMeansNuclei, cielab_palette
from labelfree.transforms.instances import instances_from_map, sequential_labels
from labelfree.transforms.stain import NoTissueError, StainSeparationResult, has_tissue, separate_stains

__all__ = [
    "AUTO_CLUSTERS",
    "SOLIDITY_MARGIN",
    "WHOLE_SOLIDITY",
    "mean_solidity",
    "split_at_markers",
    "PseudoLabels",
    "PseudoLabel",
    "PseudoLabeld",
    "PseudoLabelD",
    "PseudoLabelDict",
]

#: ``n_clusters`` value that chooses 2 or 3 clusters per tile (the default)
AUTO_CLUSTERS = "auto"
#: how much higher the mean object solidity of the two-cluster mask must be for it to replace the three-cluster one.
#: Fixed before any scoring as "clearly more convex" (solidity of a disc drawn on the pixel grid is ~0.9, of a
#: chromatin fragment or a merged pair ~0.7-0.8); never fitted to labels.
SOLIDITY_MARGIN = 0.02
#: a component of the two-cluster mask at least this convex is one nucleus (an ellipse drawn on the pixel grid
#: scores 0.9-1.0; two touching nuclei have a waist and score less)
WHOLE_SOLIDITY = 0.9


def mean_solidity(instances: np.ndarray) -> float:
    """Mean solidity (area / convex-hull area) of the objects of a ``(H, W)`` instance map; 0.0 when it has none."""
    _, solidity = solidities(np.asarray(instances))
    return float(np.mean(solidity)) if solidity.size else 0.0


def split_at_markers(
    mask: np.ndarray, markers: np.ndarray, min_size: int = 30, h: float = 2.0, whole_solidity: float = WHOLE_SOLIDITY
) -> np.ndarray:
    """Split a ``(H, W)`` foreground mask into instances grown from marker instances.

    The holes of ``mask`` are filled and the markers' pixels added. A component at least as convex as
    ``whole_solidity`` is one nucleus, whatever the markers in it (the chromatin clumps of a pale nucleus must not cut
    it); in any other component each marker grows by watershed on the negative distance to the background, so two
    touching nuclei are cut along the saddle between them. Components without a marker are split on their own by
    :func:`instances_from_map`.

    Args:
        mask: ``(H, W)`` bool foreground.
        markers: ``(H, W)`` int instance map (0 = none), typically a finer segmentation of the same tile.
        min_size, h: passed to :func:`instances_from_map` for the unmarked components.
        whole_solidity: solidity from which a component is kept whole (> 1 splits every component at its markers).

    Returns:
        ``(H, W)`` int32 instances, ids ``1..n``.
    """
    markers = np.asarray(markers)
    fg = fill_mask_holes(np.asarray(mask, dtype=bool) | (markers > 0))
    comp, _ = ndi.label(fg)
    whole = np.zeros(comp.max() + 1, dtype=bool)
    ids, solidity = solidities(comp)
    whole[ids] = solidity >= whole_solidity
    seeds = np.where(whole[comp], comp + markers.max(), markers)
    inst = watershed(-distance_to_background(fg), seeds, mask=fg) if seeds.any() else np.zeros(fg.shape, int)
    rest = instances_from_map(fg & (inst == 0), min_size=min_size, h=h)
    inst = np.where(rest > 0, rest + inst.max(), inst)
    return sequential_labels(inst)


class PseudoLabels(NamedTuple):
    """Outputs of :class:`PseudoLabel`, all 2D ``(H, W)`` unless stated.

    Attributes:
        mask: bool nuclei mask after the contour and cleaning (the hard label P of the paper).
        instances: int32 instance map (0 = background).
        membership: float32 FCM membership of the nuclei cluster (zeros on a blank tile).
        stain_matrix: ``(2, 3)`` stain matrix, or ``None`` on a blank tile.
        has_tissue: False when the tile had no stained tissue and the outputs are empty.
        n_clusters: the number of FCM clusters used (chosen per tile with ``n_clusters="auto"``); 0 on a blank tile.
    """

    mask: np.ndarray
    instances: np.ndarray
    membership: np.ndarray
    stain_matrix: np.ndarray | None
    has_tissue: bool
    n_clusters: int = 0


class PseudoLabel(Transform):
    """Array transform: ``(3, H, W)`` RGB H&E tile → :class:`PseudoLabels`.

    Args:
        stain_method: ``"vahadane"`` or ``"macenko"``.
        n_clusters: FCM clusters: ``"auto"`` (default: 2 or 3 per tile, see the module docstring), 2 (the paper)
            or 3.
        m: FCM fuzzifier.
        contour_on: ``"membership"`` (default) or ``"lightness"`` (L* of the haematoxylin image).
        contour_iter: Chan–Vese iterations (0 = no contour).
        smoothing: curvature smoothing steps per iteration.
        min_size: smallest nucleus kept, in pixels.
        h: watershed marker depth (pixels of distance).
        seed: seed for every subsample and initialisation; same seed, same result.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        stain_method: str = "vahadane",
        n_clusters: int | str = AUTO_CLUSTERS,
        m: float = 2.0,
        contour_on: str = "membership",
        contour_iter: int = 10,
        smoothing: int = 1,
        min_size: int = 30,
        h: float = 2.0,
        seed: int = 0,
    ):
        if contour_on not in ("membership", "lightness"):
            raise ValueError(f"contour_on must be 'membership' or 'lightness', got {contour_on!r}")
        self.stain_method, self.contour_on, self.min_size, self.h, self.seed = (
            stain_method,
            contour_on,
            min_size,
            h,
            seed,
        )
        if n_clusters != AUTO_CLUSTERS and not (isinstance(n_clusters, int) and n_clusters >= 2):
            raise ValueError(f"n_clusters must be {AUTO_CLUSTERS!r} or an integer >= 2, got {n_clusters!r}")
        counts = (3, 2) if n_clusters == AUTO_CLUSTERS else (n_clusters,)
        self.fcm = {k: FuzzyCMeansNuclei(n_clusters=k, m=m, seed=seed) for k in counts}
        self.contour = ActiveContour(num_iter=contour_iter, smoothing=smoothing, min_size=min_size)

    def __call__(self, img: np.ndarray | torch.Tensor) -> PseudoLabels:
        rgb = as_rgb_uint8(img, channel_first=True)
        shape = rgb.shape[:2]
        stains = None
        if has_tissue(rgb):  # black, ink and other non-H&E tiles would still give a stain matrix
            try:
                stains = separate_stains(rgb, method=self.stain_method, seed=self.seed)
            except NoTissueError:
                pass
        if stains is None:
            return PseudoLabels(
                mask=np.zeros(shape, dtype=bool),
                instances=np.zeros(shape, dtype=np.int32),
                membership=np.zeros(shape, dtype=np.float32),
                stain_matrix=None,
                has_tissue=False,
            )
        palette = cielab_palette(as_rgb_uint8(stains.haematoxylin_rgb, channel_first=True, name="haematoxylin image"))
        # the cluster counts are independent runs: side by side on two cores
        found = dict(zip(self.fcm, side_by_side(*(partial(self._segment, stains, k, palette) for k in self.fcm))))
        k = next(iter(found))
        instances, membership, _ = found[k]
        if len(found) == 2 and found[2][2] > found[3][2] + SOLIDITY_MARGIN:
            k, membership = 2, found[2][1]
            instances = split_at_markers(found[2][0] > 0, found[3][0], min_size=self.min_size, h=self.h)
        return PseudoLabels(
            mask=instances > 0,
            instances=instances,
            membership=membership,
            stain_matrix=stains.stain_matrix,
            has_tissue=True,
            n_clusters=k,
        )

    def _segment(
        self, stains: StainSeparationResult, n_clusters: int, palette: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """FCM with ``n_clusters`` on the haematoxylin image (``palette``: its CIELAB colours, shared by the runs) →
        contour → instances; returns ``(instances, nuclei membership, mean solidity of the instances)``, the first two
        ``(H, W)``; the solidity is only read when two cluster counts compete."""
        fcm_mask, membership, lightness = self.fcm[n_clusters](stains.haematoxylin_rgb, palette=palette)
        mask = self.contour(fcm_mask, membership if self.contour_on == "membership" else lightness)[0]
        instances = instances_from_map(mask, min_size=self.min_size, h=self.h)
        return instances, membership[0], mean_solidity(instances) if len(self.fcm) > 1 else 0.0


class PseudoLabeld(MapTransform):
    """Dictionary twin of :class:`PseudoLabel`.

    For each key writes ``{prefix}mask`` ``(1, H, W)`` uint8, ``{prefix}inst`` ``(1, H, W)`` int32 and
    ``{prefix}membership`` ``(1, H, W)`` float32 (``prefix`` defaults to ``"pseudo_"``).
    """

    backend = PseudoLabel.backend

    def __init__(self, keys: KeysCollection, prefix: str = "pseudo_", allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.prefix = prefix
        self.op = PseudoLabel(**kwargs)

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        d = dict(data)
        for key in self.key_iterator(d):
            res = self.op(d[key])
            d[f"{self.prefix}mask"] = res.mask[None].astype(np.uint8)
            d[f"{self.prefix}inst"] = res.instances[None]
            d[f"{self.prefix}membership"] = res.membership[None]
        return d


PseudoLabelD = PseudoLabelDict = PseudoLabeld
