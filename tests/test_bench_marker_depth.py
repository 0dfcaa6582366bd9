"""The instance-rule benchmark: every rule runs on a probability map, and its patches do not leak into the bundle."""

import numpy as np
from scipy import ndimage as ndi

import labelfree.transforms.dynamics as dynamics
import labelfree.transforms.instances as instances
from bench.marker_depth import IMAGE_VARIANTS, VARIANTS, median_peak, split


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


def test_image_rules_split_touching_discs_and_open_only_large_holes():
    prob = _two_touching_discs()
    hema = ndi.gaussian_filter(prob, 2.0)  # the discs are where the haematoxylin is
    for variant in IMAGE_VARIANTS:
        inst = split(prob, variant, hema)
        assert inst.max() == 2 and ((inst > 0) == (split(prob, "default") > 0)).all(), variant
    # a ring of probability around a hole larger than a nucleus, and a small disc with a pale pixel inside: only the
    # small hole is filled by the bounded rule (the default fills both)
    yy, xx = np.mgrid[:120, :120]
    r = np.hypot(yy - 60, xx - 60)
    ring = ((r >= 20) & (r <= 30)).astype(np.float32) * 0.9
    small = np.hypot(yy - 10, xx - 10) <= 6
    ring[small] = 0.9
    ring[10, 10] = 0.0
    bounded, default = split(ring, "bounded_holes", ring), split(ring, "default")
    assert default[60, 60] > 0 and bounded[60, 60] == 0
    assert bounded[10, 10] > 0 and default[10, 10] > 0


def test_coordinate_kmeans_cuts_a_large_irregular_object_by_its_area():
    # three small discs (the tile's typical object) and one L-shaped object of about four times their area
    inst_prob = np.zeros((120, 160), np.float32)
    yy, xx = np.mgrid[:120, :160]
    for cx in (20, 50, 80):
        inst_prob[(yy - 20) ** 2 + (xx - cx) ** 2 <= 36] = 0.9
    inst_prob[60:110, 100:112] = 0.9
    inst_prob[98:110, 112:150] = 0.9
    inst, default = split(inst_prob, "coordinate_kmeans", inst_prob), split(inst_prob, "default")
    areas = np.bincount(default.ravel())[1:]
    assert default.max() == 4 and inst.max() == 3 + round(areas.max() / np.median(areas))
    assert ((inst > 0) == (default > 0)).all()
