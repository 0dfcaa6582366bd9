import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import h_maxima, local_maxima
from skimage.segmentation import watershed

from labelfree.transforms.contour import fill_mask_holes
from labelfree.transforms.dynamics import ascent_basins, basin_saddles, dynamics_watershed
from labelfree.transforms.instances import sequential_labels


def n_regions(labels):
    return len(np.unique(labels[labels > 0]))


def smooth_relief(seed, shape=(120, 160)):
    rng = np.random.default_rng(seed)
    mask = ndi.gaussian_filter(rng.random(shape), 6) > 0.5
    relief = ndi.gaussian_filter(ndi.distance_transform_edt(mask) + rng.random(shape), 1.5) * mask
    return relief, mask


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("h", [0.5, 2.0])
def test_same_regions_as_h_maxima_then_marker_watershed(seed, h):
    relief, mask = smooth_relief(seed)
    markers, n = ndi.label(h_maxima(relief, h).astype(bool) & mask, structure=np.ones((3, 3)))
    ref = watershed(-relief, markers, mask=mask, connectivity=1)
    ref = np.where(mask & (ref == 0), ndi.label(mask & (ref == 0))[0] + n, ref)  # shallow components: one region
    got = dynamics_watershed(relief, mask, h)
    assert np.array_equal(got > 0, mask)
    # one region per h-maximum (plus one per shallow component), each marker inside its own region
    assert len(np.unique(got[got > 0])) == len(np.unique(ref[ref > 0]))
    for i in range(1, n + 1):
        assert len(np.unique(got[markers == i])) == 1
    assert len(np.unique(got[markers > 0])) == n
    # the boundaries agree except where a dropped basin is shared between two markers by a second flooding, and where
    # climbing and flooding put the line between two basins a pixel apart
    pairs = np.stack([ref[mask], got[mask]], 1)
    majority = sum(np.bincount(g).max() for g in (pairs[pairs[:, 0] == r, 1] for r in np.unique(pairs[:, 0])))
    assert majority / mask.sum() > 0.95


def _maxima(relief, mask):
    return ndi.label(local_maxima(relief, connectivity=2, allow_borders=True) & mask, structure=np.ones((3, 3)))


@pytest.mark.parametrize("seed", range(4))
def test_ascent_basins_follow_the_steepest_neighbour(seed):
    relief, mask = smooth_relief(seed)
    markers, n = _maxima(relief, mask)
    got = ascent_basins(relief, mask, markers)
    assert np.array_equal(got > 0, mask)
    assert np.array_equal(got[markers > 0], markers[markers > 0])
    # every other pixel has the label of its highest neighbour, which is higher than itself
    padded = np.pad(np.where(mask, relief, -np.inf), 1, constant_values=-np.inf)
    labels = np.pad(got, 1)
    h, w = relief.shape
    stack = np.stack([padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    lab = np.stack([labels[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    best = stack.argmax(0)
    climb = mask & (markers == 0)
    assert (np.take_along_axis(stack, best[None], 0)[0][climb] > relief[climb]).all()
    assert np.array_equal(np.take_along_axis(lab, best[None], 0)[0][climb], got[climb])
    # one basin per maximum, close to a flooding from the same maxima
    ref = watershed(-relief, markers, mask=mask, connectivity=1)
    assert len(np.unique(got[mask])) == n
    assert (got == ref)[mask].mean() > 0.95


def test_ascent_basins_flood_a_flat_shelf():
    # a ramp up to a peak at the right, with a flat shelf half-way: the shelf has no higher neighbour except at its
    # right edge, and is not a maximum
    relief = np.tile(np.arange(30, dtype=float), (9, 1))
    relief[:, 10:20] = 10.0
    mask = np.ones_like(relief, dtype=bool)
    markers, n = _maxima(relief, mask)
    assert n == 1
    got = ascent_basins(relief, mask, markers)
    assert (got == 1).all()
    # a valley between two such ramps: each shelf goes to the peak above it
    two = np.concatenate([relief[:, ::-1], relief], axis=1)
    mask2 = np.ones_like(two, dtype=bool)
    markers2, n2 = _maxima(two, mask2)
    got2 = ascent_basins(two, mask2, markers2)
    assert n2 == 2 and set(np.unique(got2)) == {1, 2}
    assert got2[:, 10:20].min() == got2[:, 10:20].max() and got2[:, 40:50].min() == got2[:, 40:50].max()
    assert got2[0, 10] != got2[0, 49]


def test_touching_peaks_split_by_depth_of_their_saddle():
    yy, xx = np.mgrid[:40, :80]
    relief = np.maximum(10 - np.hypot(yy - 20, xx - 25) / 4, 9 - np.hypot(yy - 20, xx - 55) / 4).clip(0)
    mask = relief > 0
    # the lower peak (9) is 3.25 above the saddle (5.75) between the two
    for h, n in ((3.0, 2), (3.5, 1)):
        assert n_regions(dynamics_watershed(relief, mask, h)) == n
        assert ndi.label(h_maxima(relief, h))[1] == n
    # equal peaks: neither is below the other, both seed a region, as with h_maxima
    twin = np.maximum(10 - np.hypot(yy - 20, xx - 25) / 4, 10 - np.hypot(yy - 20, xx - 55) / 4).clip(0)
    assert n_regions(dynamics_watershed(twin, mask, 8.0)) == ndi.label(h_maxima(twin, 8.0))[1] == 2
    # a component lower than h is one region; no mask, no region
    assert n_regions(dynamics_watershed(relief, mask, 20.0)) == 1
    assert not dynamics_watershed(relief, np.zeros_like(mask), 2.0).any()


def test_saddle_is_the_highest_pass():
    labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 3]])
    relief = np.array([[5, 4, 3, 5], [5, 1, 2, 5], [0, 0, 0, 0]], float)
    a, b, s = basin_saddles(labels, relief)
    got = {(int(i), int(j)): float(v) for i, j, v in zip(a, b, s)}
    assert got == {(1, 2): 3.0, (1, 3): 0.0, (2, 3): 0.0}


@pytest.mark.parametrize("seed", range(4))
def test_fill_mask_holes_matches_scipy(seed):
    mask = np.random.default_rng(seed).random((70, 90)) > 0.45
    assert np.array_equal(fill_mask_holes(mask), ndi.binary_fill_holes(mask))
    assert not fill_mask_holes(np.zeros((5, 5), bool)).any() and fill_mask_holes(np.ones((5, 5), bool)).all()


def test_sequential_labels_drops_small_and_renumbers():
    lab = np.array([[0, 7, 7, 3], [0, 7, 9, 9], [5, 0, 9, 0]])
    out = sequential_labels(lab, min_size=2)
    assert out.dtype == np.int32
    assert np.array_equal(out, [[0, 1, 1, 0], [0, 1, 2, 2], [0, 0, 2, 0]])


def test_cut_of_each_object_on_its_own_equals_its_own_watershed():
    """``cut_basins`` with ``owner``: every object cut as if its pixels were the whole mask of its own relief."""
    from labelfree.transforms.dynamics import basin_graph, cut_basins

    rng = np.random.default_rng(3)
    mask = np.zeros((160, 160), bool)
    yy, xx = np.mgrid[:160, :160]
    for cy, cx, r in rng.uniform([10, 10, 6], [150, 150, 14], size=(45, 3)):
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    relief = ndi.gaussian_filter(ndi.distance_transform_edt(mask) * rng.uniform(0.7, 1.0, mask.shape), 1.0) * mask
    graph = basin_graph(relief, mask)
    # objects: unions of basins cut across clumps (each component split by which side of column 80 a basin's
    # maximum lies), so an object's maxima compete with maxima of the other object on the same clump
    comp, _ = ndi.label(mask, structure=np.ones((3, 3), bool))
    peak_col = np.zeros(len(graph.top))
    peak_col[graph.basins[mask]] = np.nonzero(mask)[1]  # any pixel of the basin will do for a side
    owner = np.zeros(len(graph.top), dtype=np.int64)
    owner[graph.basins[mask]] = 2 * comp[mask] + (peak_col[graph.basins[mask]] > 80)
    objects = owner[graph.basins]
    parts = cut_basins(graph, 3.0, owner)[graph.basins]
    for label in np.unique(objects[objects > 0]):
        obj = objects == label
        alone = dynamics_watershed(relief * obj, obj, 3.0)
        # the same partition of the object's pixels (labels may differ for parts without a marker)
        pairs = np.unique(np.stack([alone[obj], parts[obj]]), axis=1)
        assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]
    assert len(np.unique(parts[mask])) > len(np.unique(objects[mask]))
    links = np.unique(np.stack([parts[mask], objects[mask]]), axis=1)
    assert len(np.unique(links[0])) == links.shape[1]  # no part reaches across two objects
