import numpy as np
from scipy import ndimage as ndi

from synthetic import synthetic_tile


def test_seeded_and_exact():
    a = synthetic_tile(128, n_nuclei=10, touching_pairs=2, seed=5)
    b = synthetic_tile(128, n_nuclei=10, touching_pairs=2, seed=5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.instances, b.instances)
    assert a.image.shape == (128, 128, 3) and a.image.dtype == np.uint8
    ids = np.unique(a.instances)
    assert ids[0] == 0 and np.array_equal(ids, np.arange(len(ids)))  # sequential ids
    assert not np.array_equal(a.image, synthetic_tile(128, n_nuclei=10, touching_pairs=2, seed=6).image)


def test_touching_pairs_exist_and_nuclei_are_dark():
    t = synthetic_tile(256, n_nuclei=20, touching_pairs=4, seed=0)
    touching = 0
    for i in range(1, t.instances.max() + 1):
        ring = ndi.binary_dilation(t.instances == i) & (t.instances != i) & (t.instances > 0)
        touching += ring.any()
    assert touching >= 6  # at least three pairs share a boundary
    grey = t.image.mean(axis=-1)
    assert grey[t.instances > 0].mean() < grey[t.instances == 0].mean() - 60
