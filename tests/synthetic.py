"""Synthetic H&E tiles with exact nucleus instances, for tests and demos that must not depend on real data.

Beer–Lambert mixing of known stain vectors: ``I = 255 · exp(−(C_H · h + C_E · e))`` plus sensor noise, with
haematoxylin concentrated in elliptical nuclei (varied size, orientation and chromatin texture; some in touching
pairs) and eosin in a textured stroma with pale gaps. Everything is drawn from one seeded generator.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

__all__ = ["H_STAIN", "E_STAIN", "SyntheticTile", "synthetic_tile"]

#: optical density per unit concentration (Ruifrok & Johnston), rows L2-normalised
H_STAIN = np.array([0.650, 0.704, 0.286]) / np.linalg.norm([0.650, 0.704, 0.286])
E_STAIN = np.array([0.072, 0.990, 0.105]) / np.linalg.norm([0.072, 0.990, 0.105])


class SyntheticTile(NamedTuple):
    """``image`` ``(H, W, 3)`` uint8, ``instances`` ``(H, W)`` int32 (0 = background), ``stain_matrix`` ``(2, 3)``,
    ``concentrations`` ``(2, H, W)`` float32 (noise-free)."""

    image: np.ndarray
    instances: np.ndarray
    stain_matrix: np.ndarray
    concentrations: np.ndarray


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float, theta: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def synthetic_tile(
    size: int | tuple[int, int] = 256,
    n_nuclei: int = 30,
    touching_pairs: int = 4,
    radius: tuple[float, float] = (4.0, 9.0),
    noise: float = 3.0,
    seed: int = 0,
) -> SyntheticTile:
    """Draw one synthetic H&E tile.

    Args:
        size: side, or ``(H, W)``.
        n_nuclei: isolated nuclei to place (fewer if the tile is full).
        touching_pairs: additional pairs of nuclei that touch each other.
        radius: range of the ellipse semi-axes, pixels.
        noise: standard deviation of the additive sensor noise (0–255 scale).
        seed: random seed.

    Returns:
        :class:`SyntheticTile`.
    """
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    inst = np.zeros((h, w), dtype=np.int32)
    next_id = 1

    def place(cy: float, cx: float, ry: float, rx: float, theta: float, allow_touch: int = 0) -> bool:
        nonlocal next_id
        e = _ellipse((h, w), cy, cx, ry, rx, theta)
        if e.sum() < 12:
            return False
        # keep a 2-pixel gap to every other nucleus except the partner of a touching pair
        near = ndi.binary_dilation(e, iterations=2)
        others = np.setdiff1d(np.unique(inst[near]), [0, allow_touch])
        if others.size:
            return False
        inst[e & (inst == 0)] = next_id
        next_id += 1
        return True

    for _ in range(touching_pairs):
        for _attempt in range(50):
            r1, r2 = rng.uniform(*radius, size=2)
            cy, cx = rng.uniform(r1 + 2, h - r1 - 2), rng.uniform(r1 + 2, w - r1 - 2)
            if not place(cy, cx, r1, r1 * rng.uniform(0.8, 1.0), rng.uniform(0, np.pi)):
                continue
            ang = rng.uniform(0, 2 * np.pi)
            d = (r1 + r2) * 0.95  # slight overlap: the two nuclei share a boundary
            if place(cy + d * np.sin(ang), cx + d * np.cos(ang), r2, r2 * rng.uniform(0.8, 1.0), ang, next_id - 1):
                break
            inst[inst == next_id - 1] = 0
            next_id -= 1
    for _ in range(n_nuclei):
        for _attempt in range(30):
            ry = rng.uniform(*radius)
            rx = ry * rng.uniform(0.6, 1.0)
            if place(rng.uniform(0, h), rng.uniform(0, w), ry, rx, rng.uniform(0, np.pi)):
                break

    _, seq = np.unique(inst, return_inverse=True)
    inst = seq.reshape(h, w).astype(np.int32)
    stroma = ndi.gaussian_filter(rng.normal(size=(h, w)), 6)
    stroma = (stroma - stroma.min()) / (np.ptp(stroma) + 1e-8)
    fibres = ndi.gaussian_filter(rng.normal(size=(h, w)), (1, 5))
    c_e = np.clip(0.15 + 0.6 * stroma + 0.15 * fibres / (fibres.std() + 1e-8) * 0.3, 0.0, None)
    c_e[stroma < 0.2] *= 0.15  # pale gaps (lumens, fat) with almost no stain
    chromatin = ndi.gaussian_filter(rng.normal(size=(h, w)), 1.2)
    per_nucleus = rng.uniform(0.7, 1.2, size=inst.max() + 1)
    c_h = 0.04 * stroma + np.where(inst > 0, per_nucleus[inst] + 0.15 * chromatin / (chromatin.std() + 1e-8), 0.0)
    c_h = np.clip(ndi.gaussian_filter(c_h, 0.7), 0.0, None)
    c_e = np.where(inst > 0, 0.3 * c_e, c_e)
    od = c_h[..., None] * H_STAIN + c_e[..., None] * E_STAIN
    img = 255.0 * np.exp(-od) + rng.normal(scale=noise, size=od.shape)
    return SyntheticTile(
        image=np.clip(np.rint(img), 0, 255).astype(np.uint8),
        instances=inst,
        stain_matrix=np.stack([H_STAIN, E_STAIN]),
        concentrations=np.stack([c_h, c_e]).astype(np.float32),
    )
