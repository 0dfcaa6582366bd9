"""Centroids and present labels of a label map (labelfree.core.centroids) against scipy and numpy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from labelfree.core.centroids import instance_centroids, present_labels


@pytest.mark.parametrize("seed", range(3))
def test_centroids_are_scipys_centre_of_mass(seed):
    rng = np.random.default_rng(seed)
    labels = ndi.label(ndi.gaussian_filter(rng.random((70, 90)), 2) > 0.5)[0]
    labels[labels % 4 == 0] = 0  # gaps in the numbering
    labels[-1, -1] = 999  # a one-pixel object, far beyond the others' ids
    ids = np.unique(labels)[1:]
    want = np.asarray(ndi.center_of_mass(np.ones_like(labels), labels, ids))
    got = instance_centroids(labels, ids)
    assert got.dtype == np.float64 and np.array_equal(got, want)  # the same floats, not merely close
    assert np.array_equal(instance_centroids(labels, ids[::-1]), want[::-1])  # in the order asked for


@pytest.mark.parametrize(
    "labels",
    [
        np.array([[0, 3], [3, 5]], np.int32),
        np.array([[-1, 2], [0, 0]]),  # negatives are not labels
        np.zeros((2, 2), np.uint16),
        np.array([[0, 10**9]], np.int64),  # too sparse to count: sorted instead
        np.array([[1, 7]], np.uint64),
    ],
)
def test_present_labels_are_numpys_unique_positives(labels):
    want = np.unique(labels)
    got = present_labels(labels)
    assert got.dtype == np.int64 and np.array_equal(got, want[want > 0])
