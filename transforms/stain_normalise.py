"""Stain normalisation: every tile re-coloured with one reference haematoxylin and eosin.

The tile's own stain matrix and per-pixel concentrations come from :func:`labelfree.transforms.stain.separate_stains`
(Vahadane); each stain's concentrations are scaled so that their 99th percentile matches a reference, and the pixels
are mixed back with the reference stain vectors (Macenko et al., ISBI 2009, whose reference matrix and maximum
concentrations MONAI's ``NormalizeHEStains`` also uses). A network fed normalised tiles sees the same colour for the
same amount of stain on every lab's slides. MONAI's transform is not used directly because it estimates the stains
again with Macenko's method (the project's separation is Vahadane's) and raises on tiles without tissue, where this one
returns the tile unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

from labelfree.core.imageio import as_rgb_uint8
from labelfree.core.palette import colour_palette
from labelfree.transforms.stain import (
    NoTissueError,
    palette_stain_separation,
    tile_stain_concentrations,
)

__all__ = [
    "REFERENCE_STAINS",
    "REFERENCE_MAX_CONCENTRATIONS",
    "fit_stain_reference",
    "normalise_stains",
    "StainNormalize",
    "StainNormalized",
    "StainNormalizeD",
    "StainNormalizeDict",
]

#: rows: haematoxylin and eosin optical density per unit concentration of the reference (Macenko 2009; MONAI's default)
REFERENCE_STAINS = np.array([[0.5626, 0.7201, 0.4062], [0.2159, 0.8012, 0.5581]])
#: the reference's 99th-percentile haematoxylin and eosin concentrations
REFERENCE_MAX_CONCENTRATIONS = np.array([1.9705, 1.0308])
#: a stain whose 99th percentile is below this is (almost) absent: it is not scaled up to the reference
_MIN_MAX_CONCENTRATION = 0.1


def normalise_stains(
    rgb: np.ndarray,
    percentile: float = 99.0,
    seed: int = 0,
    concentrations: np.ndarray | None = None,
    reference_stains: Sequence[Sequence[float]] | None = None,
    reference_max_concentrations: Sequence[float] | None = None,
    source_stains: Sequence[Sequence[float]] | None = None,
    source_max_concentrations: Sequence[float] | None = None,
) -> np.ndarray:
    """Re-colour one tile with the reference stains.

    Args:
        rgb: ``(H, W, 3)`` uint8.
        percentile: the concentration percentile matched to the reference maximum.
        seed: pixel subsampling seed of the stain estimate.
        concentrations: ``(2, H, W)`` the tile's own concentrations (``separate_stains(rgb, seed=seed)``) when the
            caller has them already, so the tile is not separated twice; ``None`` separates it here.
        reference_stains: ``(2, 3)`` haematoxylin and eosin optical density per unit concentration; ``None``:
            :data:`REFERENCE_STAINS` (Macenko's).
        reference_max_concentrations: ``(2,)`` the reference's ``percentile``-th concentrations; ``None``:
            :data:`REFERENCE_MAX_CONCENTRATIONS`.
        source_stains, source_max_concentrations: the stains and ``percentile``-th concentrations the tile is read
            with, estimated over a larger area (a whole slide, :func:`fit_stain_reference` of its tiles) so that
            neighbouring tiles are re-coloured alike; ``None``: the tile's own. Ignored with ``concentrations``.

    Returns:
        ``(H, W, 3)`` uint8; the tile itself when it has no stained tissue to estimate stains from.
    """
    stains, top_ref = _reference(reference_stains, reference_max_concentrations)
    if concentrations is None:
        rgb = as_rgb_uint8(rgb)
        palette = _normalised_palette(rgb, percentile, seed, stains, top_ref, source_stains, source_max_concentrations)
        if palette is None:
            return rgb
        colours, inverse = palette
        return colours[inverse].reshape(rgb.shape)
    conc = np.asarray(concentrations).reshape(2, -1)
    top = np.percentile(conc, percentile, axis=1)
    return _recolour(conc.T, top, top_ref, stains).reshape(rgb.shape)


def _reference(
    reference_stains: Sequence[Sequence[float]] | None, reference_max_concentrations: Sequence[float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``(2, 3)`` reference stains and ``(2,)`` maxima as float64 arrays (Macenko's where ``None``), checked."""
    stains = REFERENCE_STAINS if reference_stains is None else np.asarray(reference_stains, np.float64)
    top_ref = (
        REFERENCE_MAX_CONCENTRATIONS
        if reference_max_concentrations is None
        else np.asarray(reference_max_concentrations, np.float64)
    )
    if stains.shape != (2, 3) or top_ref.shape != (2,):
        raise ValueError(f"a stain reference is (2, 3) stains and (2,) maxima, got {stains.shape} and {top_ref.shape}")
    return stains, top_ref


def _normalised_palette(
    rgb: np.ndarray,
    percentile: float,
    seed: int,
    stains: np.ndarray,
    top_ref: np.ndarray,
    source_stains: Sequence[Sequence[float]] | None,
    source_max_concentrations: Sequence[float] | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The new colour of each of an ``(H, W, 3)`` uint8 tile's distinct colours, ``(U, 3)`` uint8, and each pixel's
    colour index ``(H·W,)``; ``None`` for a tile without stained tissue. A pixel's new colour depends on its colour
    alone (and the tile's percentiles), so the reconstruction runs on the tile's ~10^5 colours instead of its 10^6
    pixels; the same bytes as per pixel."""
    try:
        _, conc, inverse = palette_stain_separation(rgb, seed=seed, stain_matrix=source_stains)
    except NoTissueError:
        return None
    if source_max_concentrations is not None:
        top = np.asarray(source_max_concentrations, np.float64)
    else:
        top = _tile_percentiles(conc, inverse, percentile)
    return _recolour(conc, top, top_ref, stains), inverse


def _recolour(conc: np.ndarray, top: np.ndarray, top_ref: np.ndarray, stains: np.ndarray) -> np.ndarray:
    """``(M, 2)`` concentrations scaled from the tile's ``top`` to the reference's and mixed with its stains →
    ``(M, 3)`` uint8."""
    scale = top_ref / np.maximum(top, _MIN_MAX_CONCENTRATION)
    od = (conc * scale[None, :]) @ stains
    return np.clip(np.rint(255.0 * np.exp(-od)), 0, 255).astype(np.uint8)


def _tile_percentiles(conc: np.ndarray, inverse: np.ndarray, q: float) -> np.ndarray:
    """``(2,)`` the ``q``-th percentile over the tile's pixels of each stain, from the ``(U, 2)`` concentrations of its
    colours and each pixel's colour index (:func:`labelfree.transforms.stain.palette_stain_separation`)."""
    counts = np.bincount(inverse, minlength=conc.shape[0])
    return np.array([_pixel_percentile(conc[:, j], counts, q) for j in range(2)])


def _pixel_percentile(values: np.ndarray, counts: np.ndarray, q: float, bins: int = 1024) -> float:
    """``np.percentile(np.repeat(values, counts), q)`` (linear interpolation) without building the repeated array.

    Only the colours whose values lie in the histogram bins holding the two pixel ranks interpolated are sorted (a few
    hundred of a tile's ~10^5): which colours those are is decided by exact comparisons against the bins' edges, so
    the result is that of sorting them all."""
    total = int(counts.sum())
    pos = q / 100.0 * (total - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, total - 1)
    below, pick = 0, None
    vmin, vmax = float(values.min()), float(values.max())
    if vmax > vmin and np.isfinite(vmax - vmin):
        hist, edges = np.histogram(values, bins=bins, range=(vmin, vmax), weights=counts)
        cum = np.cumsum(hist)
        first, last = np.searchsorted(cum, [lo, hi], side="right")  # bins holding ranks lo and hi (0-based)
        low = edges[min(first, bins - 1)]
        high = edges[last + 1] if last + 1 < bins else np.inf
        inside = (values >= low) & (values < high)
        below = int(counts[values < low].sum())
        if below <= lo and below + int(counts[inside].sum()) > hi:
            pick = inside
        else:  # float rounding at an edge left a rank outside the picked colours: sort them all
            below = 0
    v, c = (values, counts) if pick is None else (values[pick], counts[pick])
    order = np.argsort(v)  # equal values are interchangeable: any order gives the same ranks
    v, ends = v[order], below + np.cumsum(c[order])
    ranks = np.searchsorted(ends, [lo, hi], side="right")
    return float(np.percentile(v[ranks], 100.0 * (pos - lo)))


def fit_stain_reference(
    tiles: Iterable[np.ndarray], percentile: float = 99.0, seed: int = 0
) -> dict[str, list[list[float]] | list[float]]:
    """A stain reference from a set of tiles: the median of their unit stain vectors and of their concentrations'
    ``percentile``-th values, i.e. the typical colour of the tiles a network was trained on.

    Args:
        tiles: ``(H, W, 3)`` uint8 tiles; those without stained tissue are skipped.
        percentile: as :func:`normalise_stains`.
        seed: pixel subsampling seed of each tile's stain estimate.

    Returns:
        ``{"stains": (2, 3) list, "max_concentrations": (2,) list}``, rounded to 4 decimals, the arguments
        ``reference_stains`` and ``reference_max_concentrations`` of :func:`normalise_stains`.

    Raises:
        ValueError: no tile has stained tissue.
    """
    vectors, tops = [], []
    for rgb in tiles:
        try:  # per distinct colour, as normalise_stains reads a tile: no per-pixel arrays are needed
            w, conc, inverse = palette_stain_separation(as_rgb_uint8(rgb), seed=seed)
        except NoTissueError:
            continue
        vectors.append(w / np.linalg.norm(w, axis=1, keepdims=True))
        tops.append(_tile_percentiles(conc.astype(np.float64), inverse, percentile))
    if not vectors:
        raise ValueError("no tile with stained tissue to fit a stain reference on")
    stains = np.median(np.stack(vectors), axis=0)
    stains /= np.linalg.norm(stains, axis=1, keepdims=True)
    return {
        "stains": np.round(stains, 4).tolist(),
        "max_concentrations": np.round(np.median(np.stack(tops), axis=0), 4).tolist(),
    }


class StainNormalize(Transform):
    """Array transform: ``(3, H, W)`` RGB → the same tile with the reference stains.

    Args:
        percentile: the concentration percentile matched to the reference maximum.
        seed: pixel subsampling seed of the stain estimate.
        reference_stains, reference_max_concentrations: the reference (:func:`normalise_stains`); ``None``: Macenko's.
        value_range: the input's white: 255 for 0..255 values, 1 for a tile already scaled to 0..1 (the output is
            scaled alike).
        source_stains, source_max_concentrations: as :func:`normalise_stains`; attributes a caller may set (a slide
            reader, once per slide).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        percentile: float = 99.0,
        seed: int = 0,
        reference_stains: Sequence[Sequence[float]] | None = None,
        reference_max_concentrations: Sequence[float] | None = None,
        value_range: float = 255.0,
        source_stains: Sequence[Sequence[float]] | None = None,
        source_max_concentrations: Sequence[float] | None = None,
    ):
        self.percentile, self.seed, self.value_range = percentile, seed, float(value_range)
        self.reference_stains, self.reference_max_concentrations = reference_stains, reference_max_concentrations
        self.source_stains, self.source_max_concentrations = source_stains, source_max_concentrations

    def __call__(self, img: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """
        Args:
            img: ``(3, H, W)`` RGB, values 0..``value_range`` (uint8 or float).

        Returns:
            ``(3, H, W)``, the dtype and container type of ``img``, values 0..``value_range``.
        """
        if self.value_range == 255.0:
            rgb = as_rgb_uint8(img, channel_first=True)
        else:  # explicit: a dark 0..255 tile and a 0..1 tile cannot be told apart by their values
            arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
            arr = arr * (255.0 / self.value_range)  # a new array: clipped and rounded in place
            rgb = as_rgb_uint8(np.rint(np.clip(arr, 0, 255, out=arr), out=arr).astype(np.uint8), True)
        stains, top_ref = _reference(self.reference_stains, self.reference_max_concentrations)
        palette = _normalised_palette(
            rgb, self.percentile, self.seed, stains, top_ref, self.source_stains, self.source_max_concentrations
        )
        colours, inverse = palette if palette is not None else colour_palette(rgb)  # no tissue: the tile itself
        # channel-first straight from the colours (converted once per colour, not per pixel): the same values as
        # re-ordering and converting the per-pixel image
        lut = colours.T
        if self.value_range != 255.0:
            lut = lut.astype(np.float32) * np.float32(self.value_range / 255.0)
        out = np.ascontiguousarray(lut)[:, inverse].reshape(3, *rgb.shape[:2])
        return convert_to_dst_type(out, dst=img, dtype=getattr(img, "dtype", None))[0]


class StainNormalized(MapTransform):
    """Dictionary twin of :class:`StainNormalize`.

    Args:
        keys: RGB image keys (one key when ``concentrations_key`` is set), values 0..255.
        percentile, seed, reference_stains, reference_max_concentrations: as :class:`StainNormalize`.
        concentrations_key: where to keep the tile's own ``(2, H, W)`` float32 haematoxylin and eosin concentrations
            (before normalisation; ``labelfree.transforms.stain.tile_stain_concentrations``, the same values as
            ``MixtureFeatures("stains")``), so that a later step which needs them does not separate the tile again.
            ``None``: not kept.
    """

    backend = StainNormalize.backend

    def __init__(
        self,
        keys: KeysCollection,
        percentile: float = 99.0,
        seed: int = 0,
        concentrations_key: str | None = None,
        allow_missing_keys: bool = False,
        reference_stains: Sequence[Sequence[float]] | None = None,
        reference_max_concentrations: Sequence[float] | None = None,
    ):
        super().__init__(keys, allow_missing_keys)
        if concentrations_key is not None and len(self.keys) != 1:
            raise ValueError(f"concentrations_key needs exactly one image key, got {len(self.keys)}")
        self.op = StainNormalize(
            percentile,
            seed,
            reference_stains=reference_stains,
            reference_max_concentrations=reference_max_concentrations,
        )
        self.concentrations_key = concentrations_key

    def __call__(self, data: Mapping[Hashable, np.ndarray | torch.Tensor]) -> dict[Hashable, np.ndarray | torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.concentrations_key is None:
                d[key] = self.op(d[key])
                continue
            img = d[key]
            rgb = as_rgb_uint8(img, channel_first=True)
            conc, separated = tile_stain_concentrations(rgb, self.op.seed)
            # a tile without stained tissue stays as it is, as in StainNormalize
            reference = dict(
                reference_stains=self.op.reference_stains,
                reference_max_concentrations=self.op.reference_max_concentrations,
            )
            out = normalise_stains(rgb, self.op.percentile, concentrations=conc, **reference) if separated else rgb
            d[key] = convert_to_dst_type(
                np.ascontiguousarray(out.transpose(2, 0, 1)), dst=img, dtype=getattr(img, "dtype", None)
            )[0]
            d[self.concentrations_key] = convert_to_dst_type(
                conc, dst=img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32
            )[0]
        return d


StainNormalizeD = StainNormalizeDict = StainNormalized
