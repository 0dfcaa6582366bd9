import numpy as np
import pytest

from labelfree.transforms.voronoi import (
    IGNORE_INDEX,
    VoronoiTriLabel,
    VoronoiTriLabeld,
    component_centres,
    voronoi_trilabel,
)


def blobs(centres, shape=(64, 64), r=3):
    m = np.zeros(shape, bool)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for cy, cx in centres:
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return m


def test_no_point_is_all_ignore():
    out = voronoi_trilabel(np.zeros((32, 32), bool))
    assert (out == IGNORE_INDEX).all()


def test_one_point_has_no_edge():
    out = voronoi_trilabel(blobs([(20, 30)]))
    assert set(np.unique(out)) == {1, IGNORE_INDEX}
    assert out[20, 30] == 1 and out[20, 33] == IGNORE_INDEX  # only the dilated centre, not the whole nucleus


def test_two_points_edge_is_the_bisector():
    out = voronoi_trilabel(blobs([(32, 16), (32, 48)]))
    edge_cols = np.unique(np.nonzero(out == 0)[1])
    assert set(edge_cols) <= {31, 32, 33} and len(edge_cols) >= 1  # within a pixel of the bisector x = 32
    assert (out[:, 32] != 1).all() and out[32, 16] == 1 and out[32, 48] == 1


@pytest.mark.parametrize("centres", [[(10, 10), (10, 50), (50, 30)], [(32, 10), (32, 30), (32, 50)]])
def test_three_points_including_collinear(centres):
    out = voronoi_trilabel(blobs(centres))
    assert (out == 0).any() and set(np.unique(out)) <= {0, 1, IGNORE_INDEX}
    for cy, cx in centres:
        assert out[cy, cx] == 1


def test_centre_of_a_non_convex_component_is_inside():
    m = np.zeros((40, 40), bool)
    m[5:35, 5:9] = True
    m[5:9, 5:35] = True  # an L whose centroid lies outside it
    (c,) = component_centres(m)
    assert m[c[0], c[1]]


def test_instance_map_input_and_wrappers():
    inst = np.zeros((1, 40, 40), np.int32)
    inst[0, 10:20, 5:15] = 1
    inst[0, 10:20, 15:25] = 2  # touching instances stay two points
    out = VoronoiTriLabel()(inst)
    assert out.shape == (1, 40, 40) and (out[0, :, 14:16] == 0).any()
    d = VoronoiTriLabeld("m")({"m": inst})
    assert np.array_equal(d["m_voronoi"], out)


def _reference_trilabel(inst, point_radius, edge_mode):
    """The tri-label by scipy's centre of mass, skimage's boundaries and a binary dilation of the centres."""
    from scipy import ndimage as ndi
    from skimage.morphology import disk
    from skimage.segmentation import find_boundaries

    out = np.full(inst.shape, 2, dtype=np.uint8)
    ids = np.unique(inst)
    ids = ids[ids > 0]
    cents = np.rint(np.array(ndi.center_of_mass(np.ones_like(inst), inst, ids))).astype(np.int64)
    assert (inst[cents[:, 0], cents[:, 1]] == ids).all()  # convex enough: the centroids are the centres
    seeds = np.zeros(inst.shape, dtype=np.int64)
    seeds[cents[:, 0], cents[:, 1]] = np.arange(1, len(cents) + 1)
    _, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    out[find_boundaries(seeds[iy, ix], mode=edge_mode)] = 0
    out[ndi.binary_dilation(seeds > 0, structure=disk(point_radius)) if point_radius else seeds > 0] = 1
    return out


@pytest.mark.parametrize("point_radius", [0, 2, 3])
@pytest.mark.parametrize("edge_mode", ["thick", "inner"])
def test_same_trilabel_as_scipy_and_skimage(point_radius, edge_mode):
    # discs of random sizes, some cut by the image's edge (their disks are clipped), ids with gaps
    rng = np.random.default_rng(point_radius)
    inst = np.zeros((90, 110), dtype=np.int32)
    yy, xx = np.mgrid[:90, :110]
    for k, (cy, cx, r) in enumerate(zip(rng.integers(0, 90, 25), rng.integers(0, 110, 25), rng.integers(2, 7, 25))):
        inst[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 3 * k + 2
    inst[0, 0] = 500  # a one-pixel nucleus in the corner
    got = voronoi_trilabel(inst, point_radius, edge_mode)
    assert np.array_equal(got, _reference_trilabel(inst, point_radius, edge_mode))
