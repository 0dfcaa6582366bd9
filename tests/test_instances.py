import numpy as np
import pytest

from labelfree.transforms.instances import (
    MIN_REL_AREA,
    NucleiInstances,
    NucleiInstancesd,
    drop_small_objects,
    instances_from_map,
)


def disc(m, cy, cx, r):
    yy, xx = np.mgrid[: m.shape[0], : m.shape[1]]
    m[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = True


def test_touching_pair_is_split_single_is_not():
    m = np.zeros((80, 120), bool)
    disc(m, 40, 30, 10)
    disc(m, 40, 48, 10)  # overlapping discs: one blob with a waist
    disc(m, 40, 95, 12)
    inst = instances_from_map(m)
    assert inst.max() == 3 and inst.dtype == np.int32
    assert inst[40, 30] != inst[40, 48]
    assert (inst > 0).sum() == m.sum()


def test_small_objects_holes_and_empty():
    m = np.zeros((60, 60), bool)
    disc(m, 30, 30, 10)
    m[30, 30] = False  # a hole
    m[2:4, 2:4] = True  # 4 px speck
    inst = instances_from_map(m, min_size=30)
    assert inst.max() == 1 and inst[30, 30] == 1 and inst[2, 2] == 0
    assert not instances_from_map(np.zeros((30, 30))).any()


def test_probability_input_and_wrappers():
    p = np.zeros((1, 60, 60), np.float32)
    yy, xx = np.mgrid[:60, :60]
    p[0] = np.exp(-((yy - 30) ** 2 + (xx - 30) ** 2) / 100.0)
    a = NucleiInstances(threshold=0.5)(p)
    assert a.shape == (1, 60, 60) and a.max() == 1
    d = NucleiInstancesd("prob", output_key="inst", threshold=0.5)({"prob": p})
    assert np.array_equal(d["inst"], a)
    with pytest.raises(ValueError, match="NaN"):
        instances_from_map(np.full((10, 10), np.nan))


def test_probability_dip_between_touching_nuclei_splits_them():
    # two discs fused along a wide neck: the distance saddle alone is too shallow to split them
    m = np.zeros((60, 90), bool)
    disc(m, 30, 33, 12)
    disc(m, 30, 40, 12)
    assert instances_from_map(m, h=2.0).max() == 1
    # a soft-label-like network output: high inside, lower along the contact line, as SSimNet learns from Voronoi edges
    p = np.where(m, 0.95, 0.0).astype(np.float32)
    p[:, 35:38] = np.where(m[:, 35:38], 0.4, 0.0)
    inst = instances_from_map(p, threshold=0.25, h=2.0)
    assert inst.max() == 2 and inst[30, 28] != inst[30, 46]
    # same foreground either way: here the weighting only moves the split
    assert np.array_equal(inst > 0, instances_from_map(p > 0.25, h=2.0) > 0)


def test_pale_filled_centre_does_not_split_a_nucleus():
    # a ring of high probability around a pale centre (a vesicular nucleus): holes are filled and weigh 1
    m = np.zeros((60, 60), bool)
    disc(m, 30, 30, 14)
    p = np.where(m, 0.9, 0.0).astype(np.float32)
    yy, xx = np.mgrid[:60, :60]
    p[(yy - 30) ** 2 + (xx - 30) ** 2 <= 36] = 0.1
    assert instances_from_map(p, threshold=0.25).max() == 1


def test_irregular_clumps_are_split_again_and_single_nuclei_are_not():
    # six lone nuclei set the tile's typical size; an L of three touching discs has necks too wide for h = 2
    m = np.zeros((100, 200), bool)
    for i in range(6):
        disc(m, 85, 15 + 30 * i, 10)
    for cy, cx in ((25, 25), (25, 39), (39, 25)):
        disc(m, cy, cx, 10)
    yy, xx = np.mgrid[:100, :200]
    m[((yy - 30) / 12.0) ** 2 + ((xx - 150) / 22.0) ** 2 <= 1] = True  # one large, convex (elliptic) nucleus
    plain = instances_from_map(m, h=2.0)
    assert plain.max() == 6 + 1 + 1 and plain[25, 25] == plain[39, 25] == plain[25, 39]
    again = instances_from_map(m, h=2.0, resplit_irregular=True)
    assert again.max() == 6 + 3 + 1 and len({again[25, 25], again[39, 25], again[25, 39]}) == 3
    assert np.array_equal(again > 0, plain > 0)  # re-splitting moves borders, never the mask
    assert again[30, 140] == again[30, 160]  # the convex one stays whole
    assert np.array_equal(NucleiInstances(threshold=0.5, resplit_irregular=True)(m[None].astype(np.float32))[0], again)


def test_glass_od_clears_the_probability_on_glass_only():
    import torch

    from labelfree.transforms.instances import ProbabilityToInstancesd

    rng = np.random.default_rng(0)
    tile = np.full((128, 128, 3), 238, np.uint8)  # glass ...
    tile[:, 64:] = rng.integers(120, 200, size=(128, 64, 3))  # ... beside stained tissue
    prob = np.zeros((2, 128, 128), np.float32)
    yy, xx = np.mgrid[:128, :128]
    for cy, cx in [(30, 30), (90, 30), (30, 100), (90, 100)]:  # two "nuclei" on glass, two on tissue
        prob[1][(yy - cy) ** 2 + (xx - cx) ** 2 < 64] = 0.9
    d = {"pred": torch.from_numpy(prob), "tile": torch.from_numpy(tile.transpose(2, 0, 1).copy())}
    kw = dict(keys="pred", image_key="tile", threshold=0.25, min_size=10)
    assert len(np.unique(ProbabilityToInstancesd(**kw)(d)["inst"])) - 1 == 4  # off (tiles): unchanged
    inst = ProbabilityToInstancesd(**kw, glass_od=0.3)(d)["inst"][0]
    assert len(np.unique(inst)) - 1 == 2 and not inst[:, :60].any() and inst[30, 100] and inst[90, 100]


def _resplit_one_at_a_time(inst, relief, h, min_size=30, min_depth=0.5, solidity=0.9, rel_area=1.5):
    """The rule flooded object by object (how 0.3.2 first ran it): the packed flooding must give the same map."""
    from scipy import ndimage as ndi
    from skimage.morphology import convex_hull_image

    from labelfree.transforms.dynamics import dynamics_watershed
    from labelfree.transforms.instances import sequential_labels

    areas = np.bincount(inst.ravel())
    median = float(np.median(areas[1:][areas[1:] > 0]))
    out, boxes = inst.astype(np.int32, copy=True), ndi.find_objects(inst)
    next_id = int(out.max()) + 1
    for label in np.flatnonzero(areas > rel_area * median):
        if label == 0 or boxes[label - 1] is None:
            continue
        box = boxes[label - 1]
        obj = inst[box] == label
        if obj.sum() >= solidity * convex_hull_image(obj).sum():
            continue
        depth = h / 2
        while depth >= min_depth:
            parts = sequential_labels(dynamics_watershed(relief[box] * obj, obj, depth), min_size)
            if parts.max() >= 2:
                nearest = ndi.distance_transform_edt(parts == 0, return_distances=False, return_indices=True)
                parts = np.where(obj, parts[nearest[0], nearest[1]], 0)
                out[box][obj] = parts[obj] + next_id - 1
                next_id += int(parts.max())
                break
            depth /= 2
    return sequential_labels(out, 1)


def test_packed_resplit_equals_one_object_at_a_time():
    from scipy import ndimage as ndi

    from labelfree.transforms.dynamics import dynamics_watershed
    from labelfree.transforms.instances import resplit_irregular_objects, sequential_labels

    # a tile of random overlapping discs: clumps of every shape, some touching each other
    rng = np.random.default_rng(1)
    m = np.zeros((220, 260), bool)
    for _ in range(90):
        disc(m, rng.uniform(10, 210), rng.uniform(10, 250), rng.uniform(6, 12))
    relief = ndi.gaussian_filter(ndi.distance_transform_edt(m), 1.0) * m
    inst = sequential_labels(dynamics_watershed(relief, m, 2.0), 30)
    expected = _resplit_one_at_a_time(inst, relief, 2.0)
    assert expected.max() >= inst.max() + 4  # several objects split: their new ids must come in the same order
    assert np.array_equal(resplit_irregular_objects(inst, relief, 2.0), expected)


def test_resplit_on_the_tile_graph_equals_the_packed_canvas():
    """``instances_from_map`` cuts the basin graph it already has again instead of flooding each object: the same
    map as flooding each object on its own (packed canvas), on clumps that touch other objects."""
    from scipy import ndimage as ndi

    from labelfree.transforms.dynamics import basin_graph, cut_basins
    from labelfree.transforms.instances import resplit_irregular_objects, sequential_labels

    rng = np.random.default_rng(4)
    m = np.zeros((240, 240), bool)
    for _ in range(110):
        disc(m, rng.uniform(10, 230), rng.uniform(10, 230), rng.uniform(6, 13))
    relief = ndi.gaussian_filter(ndi.distance_transform_edt(m) * rng.uniform(0.6, 1.0, m.shape), 1.0) * m
    graph = basin_graph(relief, m)
    inst = sequential_labels(cut_basins(graph, 2.0)[graph.basins], 30)
    packed = resplit_irregular_objects(inst, relief, 2.0)
    assert packed.max() >= inst.max() + 3
    assert np.array_equal(resplit_irregular_objects(inst, relief, 2.0, graph=graph), packed)


def test_objects_the_network_half_sees_are_dropped_and_pale_centres_are_not():
    """``min_mean_prob``: an object averaging below the soft labels' rim value (0.5) goes; a nucleus, a vesicular
    nucleus whose pale inside is below the threshold (filled, counted as 1) and a binary mask stay."""
    m = np.zeros((60, 150), bool)
    disc(m, 30, 20, 12)  # a nucleus the network sees: 0.9 inside
    disc(m, 30, 60, 12)  # a faint blob: 0.4 throughout (above the 0.25 threshold, below the rim value)
    disc(m, 30, 100, 14)  # a ring of 0.6 around a pale centre of 0.1
    disc(m, 30, 135, 10)  # a rim of 0.5 around a core of 0.55: right at the limit
    p = np.where(m, 0.9, 0.0).astype(np.float32)
    yy, xx = np.mgrid[:60, :150]
    p[(yy - 30) ** 2 + (xx - 60) ** 2 <= 144] = 0.4
    p[(yy - 30) ** 2 + (xx - 100) ** 2 <= 196] = 0.6
    p[(yy - 30) ** 2 + (xx - 100) ** 2 <= 49] = 0.1
    p[(yy - 30) ** 2 + (xx - 135) ** 2 <= 100] = 0.5
    p[(yy - 30) ** 2 + (xx - 135) ** 2 <= 25] = 0.55
    every = instances_from_map(p, threshold=0.25)
    assert every.max() == 4
    kept = instances_from_map(p, threshold=0.25, min_mean_prob=0.5)
    assert kept.max() == 3 and kept.dtype == np.int32
    assert kept[30, 60] == 0 and kept[30, 20] > 0 and kept[30, 135] > 0
    assert kept[30, 100] > 0 and (kept == kept[30, 100]).sum() == (every == every[30, 100]).sum()  # whole, centre in
    # ids stay 1..n in the order of the objects kept
    assert sorted(np.unique(kept[kept > 0])) == [1, 2, 3] and kept[30, 20] < kept[30, 100] < kept[30, 135]
    # a binary mask has no probabilities to doubt
    assert instances_from_map(m, min_mean_prob=0.5).max() == 4
    # the transform passes it through
    assert NucleiInstances(threshold=0.25, min_mean_prob=0.5)(p[None]).max() == 3


def test_objects_under_a_quarter_of_the_tiles_median_are_dropped_at_any_scale():
    """``min_rel_area``: a speck under a quarter of the tile's median object goes, whatever the magnification (the
    same tile drawn twice as large keeps and drops the same objects); ids stay ``1..n`` in order."""
    m = np.zeros((80, 200), bool)
    for col in (20, 60, 100, 140):
        disc(m, 30, col, 8)  # four nuclei of about 200 px: the median
    disc(m, 65, 40, 3)  # about 29 px: under a quarter of the median
    disc(m, 65, 120, 5)  # about 80 px: over a quarter, kept
    inst = instances_from_map(m, min_size=10)
    assert inst.max() == 6
    kept = drop_small_objects(inst)
    assert kept.max() == 5 and kept.dtype == np.int32 and kept[65, 40] == 0 and kept[65, 120] > 0
    assert sorted(np.unique(kept[kept > 0])) == [1, 2, 3, 4, 5]
    assert np.array_equal(kept > 0, (inst > 0) & (inst != inst[65, 40]))
    big = np.kron(m, np.ones((2, 2), bool))  # the same tile at twice the magnification
    assert drop_small_objects(instances_from_map(big, min_size=10)).max() == 5
    # through instances_from_map and the transform, off by default
    assert np.array_equal(instances_from_map(m, min_size=10, min_rel_area=MIN_REL_AREA), kept)
    assert NucleiInstances(min_size=10)(m[None]).max() == 6
    assert NucleiInstances(min_size=10, min_rel_area=MIN_REL_AREA)(m[None]).max() == 5
    # an empty map stays empty
    assert drop_small_objects(np.zeros((5, 5), np.int32)).max() == 0


def test_one_pass_of_drops_equals_the_steps_one_after_the_other():
    """``instances_from_map`` renumbers once for the re-split, the uncertain objects and the small ones: the same map
    as the public steps run in turn."""
    from scipy import ndimage as ndi

    from labelfree.transforms.dynamics import basin_graph, cut_basins
    from labelfree.transforms.instances import (
        drop_small_objects,
        drop_uncertain_objects,
        foreground_relief,
        resplit_irregular_objects,
        sequential_labels,
    )

    rng = np.random.default_rng(7)
    bright, faint = np.zeros((400, 400), bool), np.zeros((400, 400), bool)
    for _ in range(60):  # nuclei the network sees, of every size, and larger faint blobs it half-sees: the median
        disc(bright, rng.uniform(5, 395), rng.uniform(5, 395), rng.uniform(2.5, 7))  # area of the certain objects is
    for _ in range(70):  # half that of all objects, so the small-object rule must see the certain ones only
        disc(faint, rng.uniform(15, 385), rng.uniform(15, 385), rng.uniform(11, 15))
    faint &= ~ndi.binary_dilation(bright, iterations=2)
    p = np.where(bright, 0.9, np.where(faint, 0.4, 0.05)) + rng.normal(0, 0.03, bright.shape)
    p = np.clip(p, 0, 1).astype(np.float32)
    fg, relief = foreground_relief(p, 0.25, 10)
    graph = basin_graph(relief, fg)
    steps = sequential_labels(cut_basins(graph, 2.0)[graph.basins], 10)
    steps = resplit_irregular_objects(steps, relief, 2.0, 10, graph=graph)
    steps = drop_small_objects(drop_uncertain_objects(steps, p, 0.25, 0.5), 0.25)
    kw = dict(threshold=0.25, min_size=10, h=2.0, resplit_irregular=True, min_mean_prob=0.5, min_rel_area=0.25)
    got = instances_from_map(p, **kw)
    assert np.array_equal(got, steps)
    assert got.max() < instances_from_map(p, **{**kw, "min_mean_prob": 0.0, "min_rel_area": 0.0}).max()


def test_contact_gaps_go_back_to_the_nuclei_and_nothing_else_moves():
    from labelfree.transforms.instances import fill_contact_gaps

    inst = np.zeros((30, 60), np.int32)
    inst[5:25, 5:20] = 1
    inst[5:25, 22:37] = 2  # a 2 px gap (columns 20-21) between two touching nuclei
    inst[5:25, 45:55] = 3  # a lone nucleus: 8 px from nucleus 2
    out = fill_contact_gaps(inst, 2)
    assert out.dtype == inst.dtype
    assert np.all(out[5:25, 20] == 1) and np.all(out[5:25, 21] == 2)  # each gap pixel to its nearest nucleus
    changed = out != inst
    assert changed.sum() == 2 * 20 + 2 * 2 * 2  # the gap, and its two columns for 2 rows beyond each end (chessboard)
    assert not changed[:, 37:].any() and not changed[:, :20].any()  # no outline moves away from the contact
    assert np.array_equal(fill_contact_gaps(inst, 0), inst)
    wide = np.zeros((30, 60), np.int32)
    wide[5:25, 5:20] = 1
    wide[5:25, 24:39] = 2  # a 4 px gap: wider than 2 * width - 1, left open
    assert np.array_equal(fill_contact_gaps(wide, 2), wide)
    with pytest.raises(ValueError, match="contact gap"):
        fill_contact_gaps(inst, -1)
    prob = np.where(inst > 0, 0.9, 0.05).astype(np.float32)
    plain = instances_from_map(prob, min_size=5)
    assert np.array_equal(instances_from_map(prob, min_size=5, contact_gap=2), fill_contact_gaps(plain, 2))
    assert (instances_from_map(prob, min_size=5, contact_gap=2) > 0).sum() > (plain > 0).sum()


def test_hull_solidity_fills_a_nucleus_traced_as_lace_and_leaves_round_ones():
    # a pale nucleus drawn along its chromatin: an open ring (a C), which hole filling cannot close
    yy, xx = np.mgrid[:60, :90]
    r = np.hypot(yy - 30, xx - 25)
    lace = (r >= 12) & (r <= 16) & ~((xx > 30) & (np.abs(yy - 30) < 6))
    round_one = np.hypot(yy - 30, xx - 70) <= 12
    prob = np.where(lace | round_one, 0.9, 0.05).astype(np.float32)
    plain = instances_from_map(prob, min_size=5)
    filled = instances_from_map(prob, min_size=5, hull_solidity=0.9)
    assert plain.max() == filled.max() == 2
    c, o = plain[30, 25 - 14], plain[30, 70]
    assert plain[30, 25] == 0 and filled[30, 25] == c  # the C's inside now belongs to it
    assert np.array_equal(filled == o, plain == o)  # the round nucleus is left as it was
    assert (filled == c).sum() > 1.5 * (plain == c).sum()
    assert np.array_equal(instances_from_map(prob, min_size=5, hull_solidity=0.0), plain)
