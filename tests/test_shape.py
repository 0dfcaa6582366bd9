import numpy as np
import pytest
from skimage.draw import disk, ellipse, polygon
from skimage.measure import regionprops
from skimage.morphology import convex_hull_image

from labelfree.core.shape import convex_areas, fill_convex_hulls, solidities


def _reference(lab):
    props = regionprops(lab)
    return [p.label for p in props], [p.area for p in props], [p.area_convex for p in props]


def test_convex_area_equals_regionprops_on_random_shapes():
    # discs, rotated ellipses, random (often concave, self-intersecting) polygons, one-pixel specks and objects in
    # several parts: every count must be regionprops' own, not close to it
    rng = np.random.default_rng(0)
    for _ in range(60):
        lab = np.zeros((60, 70), np.int32)
        k = int(rng.integers(1, 6))
        for i in range(1, k + 1):
            kind = rng.integers(3)
            if kind == 0:
                rr, cc = disk((rng.uniform(5, 55), rng.uniform(5, 65)), rng.uniform(0.5, 12), shape=lab.shape)
            elif kind == 1:
                rr, cc = ellipse(
                    rng.uniform(5, 55),
                    rng.uniform(5, 65),
                    rng.uniform(1, 15),
                    rng.uniform(1, 8),
                    lab.shape,
                    rotation=rng.uniform(0, 3),
                )
            else:
                rr, cc = polygon(rng.uniform(0, 60, 5), rng.uniform(0, 70, 5), shape=lab.shape)
            lab[rr, cc] = i
        specks = rng.random(lab.shape) < 0.01
        lab[specks] = rng.integers(1, k + 1, specks.sum())
        ids, area, convex = convex_areas(lab)
        ref_ids, ref_area, ref_convex = _reference(lab)
        assert ids.tolist() == ref_ids and area.tolist() == ref_area and convex.tolist() == ref_convex


def test_hand_made_cases():
    lab = np.zeros((20, 30), np.int32)
    lab[2, 2] = 1  # one pixel: its own hull
    lab[5:8, 5:15] = 2  # a rectangle is convex
    lab[10:19, 10] = 3  # an L: the hull fills the triangle between its arms
    lab[18, 10:19] = 3
    lab[2:4, 20:22] = 7  # an object in two parts (ids need not be consecutive)
    lab[2:4, 26:28] = 7
    ids, area, convex = convex_areas(lab)
    assert ids.tolist() == [1, 2, 3, 7]
    assert area.tolist() == [1, 30, 17, 8]
    assert convex[:2].tolist() == [1, 30]
    assert convex.tolist() == _reference(lab)[2]
    assert convex[2] > 40 and convex[3] == 2 * 8  # the gap between the two parts is in the hull
    ids, sol = solidities(lab)
    assert sol[1] == 1.0 and sol[2] < 0.5
    assert np.array_equal(sol, np.array([p.solidity for p in regionprops(lab)]))


def test_empty_and_bad_input():
    ids, area, convex = convex_areas(np.zeros((5, 5), np.uint16))
    assert ids.size == area.size == convex.size == 0
    assert solidities(np.zeros((5, 5), int))[1].size == 0
    with pytest.raises(ValueError, match="label map"):
        convex_areas(np.zeros((2, 5, 5), int))


def test_fill_convex_hulls_gives_each_lone_object_its_hull():
    # separate concave objects on random polygons: each becomes exactly skimage's hull image of it
    rng = np.random.default_rng(1)
    for _ in range(20):
        lab = np.zeros((80, 80), np.int32)
        for i, (r0, c0) in enumerate([(0, 0), (0, 40), (40, 0), (40, 40)], start=1):
            rr, cc = polygon(rng.uniform(r0 + 1, r0 + 38, 6), rng.uniform(c0 + 1, c0 + 38, 6), shape=lab.shape)
            lab[rr, cc] = i
        out = fill_convex_hulls(lab)
        assert out.dtype == lab.dtype
        for i in np.unique(lab[lab > 0]):
            assert np.array_equal(out == i, convex_hull_image(lab == i))


def test_fill_convex_hulls_hand_made():
    lab = np.zeros((30, 40), np.uint16)
    lab[2:20, 2] = 1  # an L: its hull is the triangle between the arms
    lab[19, 2:20] = 1
    lab[3:6, 30:36] = 2  # a rectangle is convex: unchanged
    lab[10:12, 6:9] = 3  # a convex object inside the L's hull keeps its pixels
    out = fill_convex_hulls(lab)
    assert (out == 2).sum() == 18 and np.array_equal(out[lab > 0], lab[lab > 0])
    assert (out == 1).sum() > 150 and (out == 3).sum() == 6
    # only objects below the solidity bound are filled
    assert np.array_equal(fill_convex_hulls(lab, max_solidity=0.1), lab)
    assert np.array_equal(fill_convex_hulls(lab, max_solidity=0.0), lab)
    # two Ls facing each other: the pixels both hulls cover stay background
    two = np.zeros((30, 30), np.int32)
    two[3:23, 3] = 1  # hull: c <= r
    two[22, 3:23] = 1
    two[6, 6:27] = 2  # hull: c >= r; the two share the diagonal
    two[6:27, 26] = 2
    out = fill_convex_hulls(two)
    both = convex_hull_image(two == 1) & convex_hull_image(two == 2) & (two == 0)
    assert both.any() and (out[both] == 0).all()
    assert np.array_equal((out == 1) | both | (two == 2) & convex_hull_image(two == 1), convex_hull_image(two == 1))
    assert fill_convex_hulls(np.zeros((4, 4), np.int32)).sum() == 0
    with pytest.raises(ValueError, match="label map"):
        fill_convex_hulls(np.zeros((2, 5, 5), int))
