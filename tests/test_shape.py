import numpy as np
import pytest
from skimage.draw import disk, ellipse, polygon
from skimage.measure import regionprops

from labelfree.core.shape import convex_areas, solidities


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
