import math

import numpy as np
import pytest

from labelfree.transforms.patches import (
    USMIPatchSelection,
    USMIPatchSelectiond,
    grid_patch_locations,
    select_patches,
    usmi,
)


def test_grid_matches_the_papers_sampling():
    locs = grid_patch_locations((1000, 1000), 256, 4)
    assert len(locs) == 16
    assert sorted({y for y, _ in locs}) == [0, 248, 496, 744]
    assert grid_patch_locations((256, 300), 256, 4) == [(0, 0), (0, 15), (0, 29), (0, 44)]
    with pytest.raises(ValueError, match="smaller than"):
        grid_patch_locations((200, 300), 256)


def squares(n, side, l_shaped=False):
    m = np.zeros((64, 64), bool)
    for i in range(n):
        y, x = 2 + 12 * (i // 5), 2 + 12 * (i % 5)
        m[y : y + side, x : x + side] = True
        if l_shaped:
            m[y + 2 : y + side, x + 2 : x + side] = False  # keep an L: a 2-pixel wide corner
    return m


def test_usmi_hand_computed():
    assert usmi(squares(5, 4)) == pytest.approx(1.0)  # convex shapes: hull area = area
    m = squares(5, 6, l_shaped=True)  # L of area 20, convex hull 26 (the inner corner cut diagonally)
    from skimage.measure import regionprops, label

    hull = regionprops(label(m))[0].area_convex
    assert usmi(m) == pytest.approx(hull / 20)
    assert usmi(squares(2, 4)) == math.inf


def test_iqr_uses_only_middle_areas():
    m = np.zeros((80, 80), bool)
    for i, side in enumerate([2, 4, 4, 4, 10]):
        m[2 + 15 * i : 2 + 15 * i + side, 2 : 2 + side] = True
    # areas 4, 16, 16, 16, 100: Q1 = Q3 = 16, so Ā = 16; H̄ = mean area (all convex) = 30.4
    assert usmi(m) == pytest.approx(30.4 / 16)


def test_selection_keeps_the_most_regular():
    rng = np.random.default_rng(0)
    m = np.zeros((512, 512), bool)
    yy, xx = np.mgrid[:512, :512]
    for _ in range(200):  # round nuclei everywhere
        cy, cx = rng.integers(0, 512, 2)
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 < 25
    m[:256, :256] = False
    for cy in range(20, 240, 30):  # crosses (non-convex, hull much larger than area) in the top-left quarter
        for cx in range(20, 240, 30):
            m[cy - 10 : cy + 11, cx - 1 : cx + 2] = True
            m[cy - 1 : cy + 2, cx - 10 : cx + 11] = True
    kept = select_patches(m, 256, 3, alpha=0.7)
    assert len(kept) == round(0.7 * 9)
    assert (0, 0) not in [(y, x) for y, x, _ in kept]
    assert [s for *_, s in kept] == sorted(s for *_, s in kept)
    assert USMIPatchSelection(256, 3)(m[None]) == kept


def test_patches_without_components_are_dropped():
    m = np.zeros((512, 512), bool)
    assert select_patches(m, 256, 2) == []


def test_dict_version_crops_every_key():
    rng = np.random.default_rng(1)
    m = np.zeros((1, 300, 300), np.uint8)
    for _ in range(60):
        y, x = rng.integers(0, 290, 2)
        m[0, y : y + 6, x : x + 6] = 1
    img = rng.integers(0, 255, (3, 300, 300), dtype=np.uint8)
    out = USMIPatchSelectiond(["image", "mask"], mask_key="mask", patch_size=128, n_per_axis=3)(
        {"image": img, "mask": m, "name": "t"}
    )
    assert len(out) >= 1
    for p in out:
        y, x = p["patch_location"]
        assert p["image"].shape == (3, 128, 128) and np.array_equal(p["image"], img[:, y : y + 128, x : x + 128])
        assert p["name"] == "t" and math.isfinite(p["usmi"])
