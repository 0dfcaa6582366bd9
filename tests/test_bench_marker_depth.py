"""The instance-rule benchmark: every rule runs on a probability map, and its patches do not leak into the bundle."""

import numpy as np

import labelfree.transforms.dynamics as dynamics
import labelfree.transforms.instances as instances
from bench.marker_depth import VARIANTS, median_peak, split


def _two_touching_discs(radius: int = 12, gap: int = 18) -> np.ndarray:
    yy, xx = np.mgrid[:80, :100]
    prob = np.zeros((80, 100), np.float32)
    for cx in (40, 40 + gap):
        prob[(yy - 40) ** 2 + (xx - cx) ** 2 <= radius**2] = 0.9
    return prob


def test_every_rule_splits_two_touching_discs_and_leaves_the_bundle_as_it_was():
    prob = _two_touching_discs()
    markers, resplit = dynamics._markers_by_dynamics, instances.resplit_irregular_objects
    for variant in VARIANTS:
        inst = split(prob, variant)
        assert inst.max() == 2, variant
        assert ((inst > 0) == (split(prob, "default") > 0)).all(), variant  # the rules change the split, not the mask
    assert dynamics._markers_by_dynamics is markers and instances.resplit_irregular_objects is resplit
    assert np.array_equal(
        split(prob, "default"), instances.instances_from_map(prob, 0.25, 30, 2.0, resplit_irregular=True)
    )


def test_median_peak_is_about_the_inscribed_radius():
    # a lone disc of radius 12 at probability 0.9: its relief peaks near 0.9 × 12
    yy, xx = np.mgrid[:60, :60]
    prob = np.where((yy - 30) ** 2 + (xx - 30) ** 2 <= 144, 0.9, 0.0).astype(np.float32)
    assert 9.0 < median_peak(prob) < 11.5
