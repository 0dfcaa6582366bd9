"""bench.boundary_snap: outlines moved to the steepest haematoxylin, on hand-made stains."""

import numpy as np
from scipy import ndimage as ndi

from bench.boundary_snap import moved_outline, snap_objects, snap_tile


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _stain(*discs):
    """A haematoxylin field: each disc a blurred step (its steepest fall on its own edge)."""
    h = np.zeros((96, 96))
    for d in discs:
        h += d
    return ndi.gaussian_filter(h, 1.5)


def test_moved_outline_shrinks_and_grows_by_the_offset():
    inst = _disc((64, 64), (32, 32), 12).astype(np.int32)
    area = inst.sum()
    assert moved_outline(inst, 0) is inst
    assert moved_outline(inst, -2).sum() < area < moved_outline(inst, 2).sum()
    # growing hands background only: a touching object keeps its pixels
    two = inst.copy()
    two[32:, :] = np.where(inst[32:, :] > 0, 2, 0)
    grown = moved_outline(two, 3)
    assert np.all(grown[two > 0] == two[two > 0])


def test_snap_tile_pulls_a_too_wide_mask_onto_the_stained_edge():
    true = _disc((96, 96), (48, 48), 15)
    wide = _disc((96, 96), (48, 48), 17).astype(np.int32)
    out, offset = snap_tile(wide, _stain(true))
    assert offset == -2
    assert abs(int((out > 0).sum()) - int(true.sum())) < 0.05 * true.sum()
    # already on the edge: nothing moves
    exact, offset = snap_tile(true.astype(np.int32), _stain(true))
    assert offset == 0 and np.array_equal(exact > 0, true)


def test_snap_objects_moves_each_object_its_own_way():
    a, b = _disc((96, 96), (28, 28), 12), _disc((96, 96), (68, 68), 12)
    inst = np.zeros((96, 96), np.int32)
    inst[_disc((96, 96), (28, 28), 14)] = 1  # 2 px too wide
    inst[_disc((96, 96), (68, 68), 10)] = 2  # 2 px too narrow
    out, chosen = snap_objects(inst, _stain(a, b))
    assert chosen[1] == -2 and chosen[2] == 2
    assert set(np.unique(out)) == {0, 1, 2}
    for label, disc in ((1, a), (2, b)):
        assert abs(int((out == label).sum()) - int(disc.sum())) < 0.08 * disc.sum()


def test_empty_map_is_returned_unchanged():
    empty = np.zeros((16, 16), np.int32)
    assert snap_tile(empty, np.random.default_rng(0).random((16, 16)))[1] == 0
    assert not snap_objects(empty, np.zeros((16, 16)))[0].any()


def test_ssimnet_screen_leaves_the_small_object_rule_to_the_shared_loop_and_keeps_the_default_as_it_is():
    import torch

    from bench.boundary_snap import VARIANTS, _ssimnet_raw, _ssimnet_snap
    from labelfree.transforms.instances import drop_small_objects

    prob = np.zeros((96, 96), np.float32)
    prob[_disc((96, 96), (40, 40), 14)] = 0.9
    prob[_disc((96, 96), (80, 80), 4)] = 0.9  # far under a quarter of the median: the rule drops it, once
    item = {"tile": torch.zeros(3, 96, 96)}
    raw = _ssimnet_raw(prob, [], item, {"min_size": 10})
    assert tuple(raw) == VARIANTS
    assert all(len(np.unique(m)) == 3 for m in raw.values())  # both objects, before the rule
    dropped = drop_small_objects(raw["default"], 0.25)
    assert len(np.unique(dropped)) == 2
    assert _ssimnet_snap("default", dropped, item) is dropped
