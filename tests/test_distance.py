import numpy as np
import pytest
from scipy import ndimage as ndi

from labelfree.core import distance
from labelfree.core.distance import distance_to_background


def blobs(seed, shape, sigma, level):
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.random(shape), sigma) > level


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("sigma,level", [(1.0, 0.5), (3.0, 0.45), (6.0, 0.5), (6.0, 0.4)])
def test_equals_scipy_bit_for_bit(seed, sigma, level):
    mask = blobs(seed, (97, 203), sigma, level)
    got = distance_to_background(mask)
    assert got.dtype == np.float64
    assert np.array_equal(got, ndi.distance_transform_edt(mask))


def test_hand_made_distances():
    # a 5 x 7 rectangle of foreground inside background: distance = steps to the nearest outside pixel
    mask = np.zeros((7, 9), bool)
    mask[1:6, 1:8] = True
    got = distance_to_background(mask)
    assert got[3, 4] == 3.0 and got[1, 1] == 1.0 and got[2, 2] == 2.0 and got[0, 0] == 0.0
    # the nearest background pixel is diagonal: sqrt(2)
    mask = np.ones((3, 3), bool)
    mask[0, 0] = False
    assert distance_to_background(mask)[1, 1] == np.sqrt(2.0)
    assert distance_to_background(mask)[2, 2] == np.sqrt(8.0)


@pytest.mark.parametrize(
    "mask",
    [
        np.zeros((6, 5), bool),
        np.ones((6, 5), bool),
        np.eye(8, dtype=bool),
        np.pad(np.ones((4, 30), bool), ((0, 0), (0, 1))),  # columns without background: only the row pass reaches it
        np.ones((1, 12), bool) & (np.arange(12) != 7),
    ],
)
def test_edge_cases_equal_scipy(mask):
    assert np.array_equal(distance_to_background(mask), ndi.distance_transform_edt(mask))


def test_deep_pixels_are_followed_past_the_dense_steps():
    # a tall thin ellipse: pixels up to 45 rows from their column's background, beyond the 16 dense erosion steps
    yy, xx = np.mgrid[:120, :400]
    mask = ((yy - 60) / 46.0) ** 2 + ((xx - 200) / 6.0) ** 2 < 1
    mask |= blobs(2, (120, 400), 1.5, 0.55)
    assert distance._column_distances(mask, distance.COLUMN_LIMIT).max() > 40
    assert np.array_equal(distance_to_background(mask), ndi.distance_transform_edt(mask))


def test_large_objects_fall_back_to_scipy(monkeypatch):
    calls = []
    real = ndi.distance_transform_edt
    monkeypatch.setattr(distance.ndi, "distance_transform_edt", lambda m: calls.append(1) or real(m))
    disc = np.hypot(*np.mgrid[-60:61, -60:61]) < 58
    assert np.array_equal(distance_to_background(disc), real(disc))
    assert calls  # a disc of radius 58 fills the image: not worth the bounded search
    calls.clear()
    assert np.array_equal(distance_to_background(blobs(0, (80, 80), 1.0, 0.5)), real(blobs(0, (80, 80), 1.0, 0.5)))
    assert not calls


def test_rejects_non_2d():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        distance_to_background(np.zeros((2, 3, 4), bool))
