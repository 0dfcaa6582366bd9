"""bench.outline_arms: the post-processing arms scored on saved instance maps (edge_snap, dark_core)."""

import numpy as np
from scipy import ndimage as ndi

from bench.outline_arms import dark_core, levels, snap, two_gaussians


def test_two_gaussians_tells_one_population_from_two():
    rng = np.random.default_rng(0)
    _, d_one = two_gaussians(rng.normal(1.5, 0.2, 50_000))
    t, d_two = two_gaussians(np.r_[rng.normal(1.2, 0.15, 25_000), rng.normal(2.0, 0.15, 25_000)])
    assert d_one < 1.0  # the two halves of one bell curve would give 2.65: the mixture fit must not
    assert d_two > 4.0 and 1.45 < t < 1.75
    assert two_gaussians(np.full(10, 0.3)) == (0.3, 0.0)


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_dark_core_trims_only_objects_with_a_dark_majority_on_a_two_population_tile():
    shape = (80, 80)
    inst = np.zeros(shape, np.int32)
    inst[_disc(shape, (20, 20), 12)] = 1  # a dark nucleus in a thin purple rim
    inst[_disc(shape, (58, 58), 12)] = 2  # a pale object: left alone
    h = np.full(shape, 0.1)
    h[inst == 1] = 1.2
    h[_disc(shape, (20, 20), 10)] = 2.0
    h[inst == 2] = 1.2
    h += np.random.default_rng(1).normal(0, 0.03, shape)
    out, trimmed = dark_core(inst, h)
    assert trimmed
    assert np.array_equal(out == 1, _disc(shape, (20, 20), 10))
    assert np.array_equal(out == 2, inst == 2)


def test_dark_core_leaves_a_one_population_tile_alone():
    shape = (60, 60)
    inst = np.zeros(shape, np.int32)
    inst[_disc(shape, (30, 30), 15)] = 1
    h = np.where(inst > 0, 1.5, 0.1) + np.random.default_rng(2).normal(0, 0.1, shape)
    out, trimmed = dark_core(inst, h)
    assert not trimmed and out is inst


def test_snap_moves_every_outline_to_the_steepest_ring():
    shape = (64, 64)
    inst = np.zeros(shape, np.int32)
    inst[_disc(shape, (20, 20), 8)] = 1
    inst[_disc(shape, (44, 44), 8)] = 2
    level, owner = levels(inst)
    grad = np.where(level == 1, 5.0, 1.0)  # the edge lies one pixel outside every object
    grown = snap(inst, grad, per_object=False)
    assert np.array_equal(grown > 0, (owner > 0) & (level <= 1))
    assert set(np.unique(grown)) == {0, 1, 2}
    assert np.array_equal(snap(inst, np.where(level == 0, 5.0, 1.0), per_object=True), inst)  # already on the edge
    # never below half the area, whatever the gradient says
    shrunk = snap(inst, np.where(level == -2, 5.0, 1.0), per_object=True)
    assert np.all(ndi.sum_labels(shrunk > 0, inst, [1, 2]) >= 0.5 * ndi.sum_labels(inst > 0, inst, [1, 2]))
