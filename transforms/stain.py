"""Stain separation of H&E tiles: Vahadane sparse NMF (default) or Macenko.

Beer–Lambert: the optical density ``OD = -ln(I / 255)`` of every pixel is a non-negative mix of two stain vectors,
``OD = C · W`` with ``W`` (2, 3) the stain matrix (rows L2-normalised, row 0 = haematoxylin) and ``C`` (N, 2) the
concentrations. Vahadane et al. (IEEE TMI 2016) learn ``W`` by sparse non-negative dictionary learning on tissue
pixels; this module does that without SPAMS. With two atoms the non-negative lasso has a closed-form solution (one of
four active sets), so codes are exact and cheap for a million pixels.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import NamedTuple

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from labelfree.core.imageio import InvalidImageError, as_rgb_uint8
from labelfree.core.palette import colour_palette

__all__ = [
    "NoTissueError",
    "StainSeparationResult",
    "optical_density",
    "MIN_TISSUE_FRACTION",
    "NO_TISSUE_NOTE",
    "tissue_mask",
    "he_tissue_mask",
    "he_colours",
    "has_tissue",
    "nonneg_lasso_2",
    "vahadane_stain_matrix",
    "macenko_stain_matrix",
    "separate_stains",
    "palette_stain_separation",
    "stain_concentrations",
    "tile_stain_concentrations",
    "StainSeparation",
    "StainSeparationd",
    "StainSeparationD",
    "StainSeparationDict",
]

#: below this fraction of tissue pixels a tile is treated as blank (no stain to estimate, an empty mask)
MIN_TISSUE_FRACTION = 0.005
#: what a run says of a tile without H&E tissue
NO_TISSUE_NOTE = "no H&E tissue (blank glass, black, ink or not H&E): empty mask"

#: Ruifrok & Johnston's H and E optical-density vectors: the start of the dictionary learning
RUIFROK_HE = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]])


class NoTissueError(InvalidImageError):
    """The tile has (almost) no stained tissue, so no stain can be estimated from it."""


class StainSeparationResult(NamedTuple):
    """Stain matrix ``(2, 3)`` (row 0 haematoxylin, row 1 eosin), concentrations ``(2, H, W)`` and the
    haematoxylin-only RGB reconstruction ``(3, H, W)`` uint8."""

    stain_matrix: np.ndarray
    concentrations: np.ndarray
    haematoxylin_rgb: np.ndarray


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """``-ln(I / 255)`` of a uint8 image, with 0 read as 1 so the density stays finite. Shape is kept."""
    lut = -np.log(np.maximum(np.arange(256), 1) / 255.0).astype(np.float32)
    return lut[rgb]


def tissue_mask(rgb: np.ndarray, luminosity_threshold: float = 0.8) -> np.ndarray:
    """Pixels darker than ``luminosity_threshold`` in CIELAB L*/100 (StainTools' tissue rule).

    Args:
        rgb: ``(..., 3)`` uint8.
    Returns:
        boolean array of shape ``rgb.shape[:-1]``.
    """
    # L* depends only on luminance Y, so threshold Y (a 256-entry table per channel) instead of converting to LAB
    c = np.arange(256) / 255.0
    lin = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    y = 0.2126 * lin[rgb[..., 0]] + 0.7152 * lin[rgb[..., 1]] + 0.0722 * lin[rgb[..., 2]]
    l_star = luminosity_threshold * 100.0
    y_max = ((l_star + 16.0) / 116.0) ** 3 if l_star > 8.0 else l_star / 903.3
    return y < y_max


def he_tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels that can be H&E-stained tissue: :func:`tissue_mask` (not glass) and none of black, grey or a colour that
    haematoxylin and eosin cannot give.

    Together the rules keep at least 95 % of the :func:`tissue_mask` pixels of every MoNuSeg, CPM-15 and GlaS training
    tile (``bench/tissue_check.py``), and the blank-tile decision needs only :data:`MIN_TISSUE_FRACTION` of them:

    * brightest channel >= 40: not black (scanner borders, out-of-focus dark areas, black ink);
    * max − min channel >= 15: not grey (ink, dust, grey backgrounds);
    * saturation (max − min) / max <= 0.9: not a pure, clipped colour (pen, display graphics);
    * green <= min(red, blue) + 20: both stains absorb green the most, green and cyan ink do not.

    Args:
        rgb: ``(..., 3)`` uint8.
    Returns:
        boolean array of shape ``rgb.shape[:-1]``.
    """
    return tissue_mask(rgb) & he_colours(rgb)


def he_colours(rgb: np.ndarray) -> np.ndarray:
    """The colour rules of :func:`he_tissue_mask` without its brightness rule: not black, not grey, not a clipped
    colour, not greener than H&E can be. Args: ``rgb`` ``(..., 3)`` uint8. Returns: boolean ``rgb.shape[:-1]``."""
    c = np.asarray(rgb).astype(np.int16)
    r, g, b = c[..., 0], c[..., 1], c[..., 2]
    hi, lo = c.max(axis=-1), c.min(axis=-1)
    chroma = hi - lo
    return (hi >= 40) & (chroma >= 15) & (chroma * 10 <= hi * 9) & (g <= np.minimum(r, b) + 20)


def has_tissue(rgb: np.ndarray, min_fraction: float = MIN_TISSUE_FRACTION, block: int = 4) -> bool:
    """Whether at least ``min_fraction`` of an ``(H, W, 3)`` uint8 tile is H&E tissue (:func:`he_tissue_mask`): blank
    glass, black, grey, pen-coloured and saturated tiles are not.

    The rules are applied to the means of ``block × block`` pixel blocks: sensor noise on a flat ink or glass tile
    would otherwise push a few percent of single pixels across the colour rules, while real tissue is
    stained over areas much larger than a block.
    """
    arr = np.asarray(rgb)
    h, w = (arr.shape[0] // block) * block, (arr.shape[1] // block) * block
    if h == 0 or w == 0:
        means = arr
    else:
        # block sums by strided adds (block² slices): ten times faster than a mean over reshaped axes; exact
        sums = np.zeros((h // block, w // block, arr.shape[2]), dtype=np.uint32)
        for dy in range(block):
            for dx in range(block):
                sums += arr[dy:h:block, dx:w:block]
        means = np.rint(sums / np.float32(block * block)).astype(np.uint8)
    return bool(he_tissue_mask(means).mean() >= min_fraction)


def nonneg_lasso_2(x: np.ndarray, dictionary: np.ndarray, lam: float) -> np.ndarray:
    """Exact solution of ``min_a ½‖x − aD‖² + lam·Σa`` subject to ``a ≥ 0`` for a two-atom dictionary.

    Args:
        x: ``(N, 3)`` optical densities.
        dictionary: ``(2, 3)`` atoms as rows.
        lam: L1 weight (>= 0).

    Returns:
        ``(N, 2)`` non-negative codes.
    """
    x = np.asarray(x, dtype=np.float32)
    d = np.asarray(dictionary, dtype=np.float64)
    g = d @ d.T
    b = x @ d.T.astype(np.float32) - np.float32(lam)  # (N, 2): the linear term once the L1 penalty is folded in
    # one atom only: a_k = max(b_k, 0) / g_kk, objective -max(b_k, 0)^2 / (2 g_kk); keep the better atom
    bp = np.maximum(b, 0.0)
    diag = np.diag(g).astype(np.float32)
    gain = bp**2 / diag
    first = gain[:, 0] >= gain[:, 1]
    out = bp / diag
    # selects written in place (copyto with a mask) rather than new arrays: the same bits, a third faster; each row keeps
    # its better atom and zeroes the other
    np.copyto(out, np.float32(0), where=np.stack([~first, first], axis=1))
    det = g[0, 0] * g[1, 1] - g[0, 1] ** 2
    if det > 1e-10:
        # the unconstrained minimiser is the constrained optimum whenever it is feasible
        both = b @ (np.array([[g[1, 1], -g[0, 1]], [-g[0, 1], g[0, 0]]]) / det).astype(np.float32)
        np.copyto(out, both, where=((both[:, 0] >= 0) & (both[:, 1] >= 0))[:, None])
    return out


def _order_and_normalise(stains: np.ndarray) -> np.ndarray:
    stains = stains / np.maximum(np.linalg.norm(stains, axis=1, keepdims=True), 1e-12)
    if stains[0, 0] < stains[1, 0]:  # haematoxylin absorbs more red light than eosin
        stains = stains[::-1]
    return np.ascontiguousarray(stains)


def _tissue_od(
    palette: tuple[np.ndarray, np.ndarray], luminosity_threshold: float, min_tissue_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """The optical densities of a tile's colours and the colour index of each of its tissue pixels, in pixel order.

    Tissue (:func:`tissue_mask`, and some stain) is a property of a pixel's colour, so it is decided once per distinct
    colour (``palette``: :func:`labelfree.core.palette.colour_palette` of the tile) rather than per pixel.
    """
    colours, inverse = palette
    od = optical_density(colours)
    # near-white pixels inside the mask carry no stain direction, only noise
    tissue = tissue_mask(colours, luminosity_threshold) & (od.sum(axis=-1) > 0.15)
    pixels = np.flatnonzero(tissue[inverse])
    if pixels.size < min_tissue_fraction * inverse.size:
        fraction = pixels.size / max(inverse.size, 1)
        raise NoTissueError(
            f"only {100 * fraction:.2f}% of the pixels are stained tissue (need {100 * min_tissue_fraction:g}%); "
            "is this a background or blank tile?"
        )
    return od, inverse[pixels]


def vahadane_stain_matrix(
    rgb: np.ndarray,
    lambda1: float = 0.1,
    n_iter: int = 30,
    max_pixels: int = 20000,
    luminosity_threshold: float = 0.8,
    min_tissue_fraction: float = MIN_TISSUE_FRACTION,
    seed: int = 0,
    palette: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Stain matrix by sparse non-negative dictionary learning on tissue optical densities.

    Alternates exact non-negative lasso codes (:func:`nonneg_lasso_2`) with block-coordinate updates of the atoms,
    each projected on ``{d ≥ 0, ‖d‖ ≤ 1}`` as in SPAMS ``trainDL(mode=2, posD=True, posAlpha=True)``.

    Args:
        rgb: ``(H, W, 3)`` uint8.
        lambda1: L1 weight of the codes (StainTools: 0.1).
        n_iter: alternations.
        max_pixels: tissue pixels subsampled (seeded) for learning.
        luminosity_threshold: tissue = L*/100 below this.
        min_tissue_fraction: fewer tissue pixels than this raises :class:`NoTissueError`.
        seed: subsampling seed.
        palette: ``rgb``'s :func:`~labelfree.core.palette.colour_palette`, when it is already built.

    Returns:
        ``(2, 3)`` float64, rows L2-normalised, row 0 = haematoxylin (larger red OD).
    """
    colour_od, tissue = _tissue_od(
        colour_palette(rgb) if palette is None else palette, luminosity_threshold, min_tissue_fraction
    )
    if tissue.size > max_pixels:
        tissue = tissue[np.random.default_rng(seed).choice(tissue.size, max_pixels, replace=False)]
    od = colour_od[tissue]
    d = RUIFROK_HE.copy()
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    for _ in range(n_iter):
        a = nonneg_lasso_2(od, d, lambda1)
        aat = a.T @ a
        xa = od.T @ a  # (3, 2)
        prev = d.copy()
        for j in range(2):
            if aat[j, j] < 1e-10:
                continue  # an unused atom keeps its value rather than collapsing to zero
            dj = d[j] + (xa[:, j] - d.T @ aat[:, j]) / aat[j, j]
            dj = np.maximum(dj, 0.0)
            d[j] = dj / max(np.linalg.norm(dj), 1.0)
        if np.abs(d - prev).max() < 1e-6:
            break
    return _order_and_normalise(d)


def macenko_stain_matrix(rgb: np.ndarray, tli: int = 240, alpha: float = 1.0, beta: float = 0.15) -> np.ndarray:
    """Stain matrix by Macenko's angle percentiles, through MONAI's ``ExtractHEStains``.

    Returns:
        ``(2, 3)`` float64, rows L2-normalised, row 0 = haematoxylin.
    """
    from monai.apps.pathology.transforms import ExtractHEStains

    try:
        he = ExtractHEStains(tli=tli, alpha=alpha, beta=beta)(rgb)
    except ValueError as exc:  # MONAI raises when no pixel passes the absorbance threshold
        raise NoTissueError(f"Macenko stain extraction found no stained tissue ({exc})") from exc
    return _order_and_normalise(np.asarray(he, dtype=np.float64).T)


def separate_stains(
    rgb: np.ndarray, method: str = "vahadane", lambda1: float = 0.1, lambda_conc: float = 0.01, seed: int = 0, **kwargs
) -> StainSeparationResult:
    """Estimate the stain matrix, solve the concentrations of every pixel and rebuild the haematoxylin-only image.

    Args:
        rgb: ``(H, W, 3)`` or ``(3, H, W)`` RGB (validated by :func:`labelfree.core.imageio.as_rgb_uint8`).
        method: ``"vahadane"`` or ``"macenko"``.
        lambda1: Vahadane dictionary L1 weight.
        lambda_conc: L1 weight of the per-pixel concentrations (StainTools: 0.01).
        seed: pixel subsampling seed.
        kwargs: passed to the stain-matrix estimator.

    Raises:
        NoTissueError: the tile has no stained tissue.
    """
    rgb = as_rgb_uint8(rgb)
    w, conc, inverse = palette_stain_separation(rgb, method, lambda1, lambda_conc, seed, **kwargs)
    h, wd = rgb.shape[:2]
    od_h = conc[:, :1] * w[:1].astype(np.float32)
    hema = np.clip(np.rint(255.0 * np.exp(-od_h)), 0, 255).astype(np.uint8)[inverse]
    return StainSeparationResult(
        stain_matrix=w,
        concentrations=np.ascontiguousarray(conc[inverse].T.reshape(2, h, wd)),
        haematoxylin_rgb=np.ascontiguousarray(hema.T.reshape(3, h, wd)),
    )


def palette_stain_separation(
    rgb: np.ndarray,
    method: str = "vahadane",
    lambda1: float = 0.1,
    lambda_conc: float = 0.01,
    seed: int = 0,
    stain_matrix: np.ndarray | None = None,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`separate_stains` per distinct colour: the stain matrix, the concentrations of each of the tile's colours
    and each pixel's colour index, for a caller that maps colours to colours (stain normalisation) and so never needs
    the per-pixel arrays.

    Args:
        rgb: ``(H, W, 3)`` uint8.
        method, lambda1, lambda_conc, seed, kwargs: as :func:`separate_stains`.
        stain_matrix: ``(2, 3)`` a matrix estimated elsewhere (a whole slide's, for one of its tiles); ``None``: the
            tile's own, by ``method``.

    Returns:
        ``(2, 3)`` float64 stain matrix, ``(U, 2)`` float32 concentrations of the ``U`` distinct colours
        (:func:`labelfree.core.palette.colour_palette` order) and ``(H·W,)`` int64 colour index of each pixel.

    Raises:
        NoTissueError: the tile has no stained tissue (never with ``stain_matrix``).
    """
    if method not in ("vahadane", "macenko"):
        raise ValueError(f"unknown stain separation method {method!r}; use 'vahadane' or 'macenko'")
    palette = colour_palette(rgb)  # the tile's colours: both the matrix and the concentrations are read off them
    if stain_matrix is not None:
        w = np.asarray(stain_matrix, dtype=np.float64)
    elif method == "vahadane":
        w = vahadane_stain_matrix(rgb, lambda1=lambda1, seed=seed, palette=palette, **kwargs)
    else:
        w = macenko_stain_matrix(rgb, **kwargs)
    conc, inverse = _palette_concentrations(rgb, w, lambda_conc, palette)
    return w, conc, inverse


def _palette_concentrations(
    rgb: np.ndarray,
    stain_matrix: np.ndarray,
    lambda_conc: float,
    palette: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Concentrations ``(U, 2)`` float32 of each distinct colour of ``rgb`` and each pixel's colour index ``(N,)``:
    the lasso of a pixel depends on its colour alone (:mod:`labelfree.core.palette`). ``palette``: ``rgb``'s
    :func:`~labelfree.core.palette.colour_palette`, when it is already built."""
    colours, inverse = colour_palette(rgb) if palette is None else palette
    conc = nonneg_lasso_2(optical_density(colours), stain_matrix, lambda_conc).astype(np.float32)
    return conc, inverse


def stain_concentrations(rgb: np.ndarray, stain_matrix: np.ndarray, lambda_conc: float = 0.01) -> np.ndarray:
    """Per-pixel stain concentrations of a tile under a given stain matrix (the non-negative lasso of every pixel).

    Args:
        rgb: ``(H, W, 3)`` uint8.
        stain_matrix: ``(2, 3)``, rows L2-normalised, row 0 haematoxylin.
        lambda_conc: L1 weight of the concentrations.

    Returns:
        ``(2, H, W)`` float32.
    """
    conc, inverse = _palette_concentrations(rgb, stain_matrix, lambda_conc)
    return np.ascontiguousarray(conc[inverse].T.reshape(2, *rgb.shape[:2]))


def tile_stain_concentrations(rgb: np.ndarray, seed: int = 0) -> tuple[np.ndarray, bool]:
    """The tile's own haematoxylin and eosin concentrations, with a fall-back for tiles without stained tissue.

    Args:
        rgb: ``(H, W, 3)`` uint8.
        seed: pixel subsampling seed of the stain estimate.

    Returns:
        ``(2, H, W)`` float32 concentrations and whether they come from the tile's own (Vahadane) stain matrix; on blank
        glass or a stain the estimator cannot read they come from the Ruifrok–Johnston matrix, so every tile has finite
        concentrations.
    """
    try:
        return separate_stains(rgb, seed=seed).concentrations, True
    except NoTissueError:
        return stain_concentrations(rgb, RUIFROK_HE / np.linalg.norm(RUIFROK_HE, axis=1, keepdims=True)), False


class StainSeparation(Transform):
    """Array transform: ``(3, H, W)`` RGB → :class:`StainSeparationResult`.

    Args:
        method: ``"vahadane"`` (sparse NMF) or ``"macenko"`` (MONAI ``ExtractHEStains``).
        lambda1: Vahadane dictionary L1 weight.
        lambda_conc: concentration L1 weight.
        seed: pixel subsampling seed (the result is deterministic for a given seed).
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, method: str = "vahadane", lambda1: float = 0.1, lambda_conc: float = 0.01, seed: int = 0):
        if method not in ("vahadane", "macenko"):
            raise ValueError(f"unknown stain separation method {method!r}; use 'vahadane' or 'macenko'")
        self.method, self.lambda1, self.lambda_conc, self.seed = method, lambda1, lambda_conc, seed

    def __call__(self, img: np.ndarray | torch.Tensor) -> StainSeparationResult:
        rgb = as_rgb_uint8(img, channel_first=True)
        return separate_stains(rgb, self.method, self.lambda1, self.lambda_conc, self.seed)


class StainSeparationd(MapTransform):
    """Dictionary twin of :class:`StainSeparation`.

    Writes ``{key}_stains`` (2, 3), ``{key}_conc`` (2, H, W) float32 and ``{key}_hema`` (3, H, W) uint8 next to each key.
    """

    backend = StainSeparation.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.separator = StainSeparation(**kwargs)

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        d = dict(data)
        for key in self.key_iterator(d):
            res = self.separator(d[key])
            d[f"{key}_stains"], d[f"{key}_conc"], d[f"{key}_hema"] = res
        return d


StainSeparationD = StainSeparationDict = StainSeparationd
