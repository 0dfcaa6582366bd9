"""Distance to each nucleus's own edge (labelfree.transforms.edge_distance) and its use as the instances' relief."""

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from labelfree.transforms.edge_distance import (
    DISTANCE_UNIT,
    DistanceOutputd,
    EdgeDistance,
    EdgeDistanced,
    edge_distance,
)
from labelfree.transforms.instances import instances_from_map


def _two_touching_discs(shape=(48, 64), r=(10, 9), gap=8):
    """Two discs of radii ``r`` whose centres are ``gap`` apart (overlapping: their union has one hill of distance to
    the background) and the instance map that cuts the union halfway between the centres."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = shape[0] // 2, shape[1] // 2
    a = (yy - cy) ** 2 + (xx - (cx - gap // 2)) ** 2 <= r[0] ** 2
    b = (yy - cy) ** 2 + (xx - (cx + gap // 2)) ** 2 <= r[1] ** 2
    inst = np.zeros(shape, np.int32)
    inst[a | b] = np.where(xx < cx, 1, 2)[a | b]
    return inst


def test_a_lone_nucleus_gets_its_distance_to_the_background():
    inst = np.zeros((30, 30), np.int32)
    inst[5:20, 8:25] = 3
    np.testing.assert_array_equal(edge_distance(inst), ndi.distance_transform_edt(inst > 0).astype(np.float32))


def test_touching_nuclei_are_separated_by_zeros_and_each_peaks_inside_itself():
    inst = _two_touching_discs()
    dist = edge_distance(inst)
    assert dist.dtype == np.float32 and dist.shape == inst.shape
    assert np.all(dist[inst == 0] == 0)
    # the contact line: nucleus pixels next to the other nucleus
    line = (inst == 1) & (ndi.maximum_filter(inst, size=3) == 2)
    assert line.any() and np.all(dist[line] == 0)
    for k in (1, 2):
        peak = np.unravel_index(np.argmax(np.where(inst == k, dist, -1)), inst.shape)
        assert inst[peak] == k and dist[peak] >= 4
    # across the middle of the line the union's own distance to the background is deep
    assert ndi.distance_transform_edt(inst > 0)[inst.shape[0] // 2][line[inst.shape[0] // 2]].min() > 8


def test_array_and_dictionary_transforms_keep_the_input_type():
    inst = _two_touching_discs()[None]
    out = EdgeDistance()(torch.as_tensor(inst))
    assert isinstance(out, torch.Tensor) and out.shape == (1, *inst.shape[1:]) and out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy()[0], edge_distance(inst[0]))
    d = EdgeDistanced("label")({"label": inst})
    assert isinstance(d["label_distance"], np.ndarray) and np.array_equal(d["label_distance"], out.numpy())
    with pytest.raises(ValueError, match="instance map"):
        EdgeDistance()(inst[0])


def test_distance_output_is_moved_to_its_own_key_in_pixels():
    pred = torch.randn(3, 8, 9)
    d = DistanceOutputd("pred")({"pred": pred})
    assert d["pred"].shape == (2, 8, 9) and torch.equal(d["pred"], pred[:2])
    assert torch.allclose(d["distance"], pred[2:] * DISTANCE_UNIT)
    two = DistanceOutputd("pred")({"pred": pred[:2]})
    assert "distance" not in two and torch.equal(two["pred"], pred[:2])
    with pytest.raises(ValueError, match="one distance"):
        DistanceOutputd("pred")({"pred": torch.randn(4, 8, 9)})


def test_the_distance_output_splits_nuclei_the_foreground_distance_leaves_whole():
    inst = _two_touching_discs()
    prob = (inst > 0).astype(np.float32)
    whole = instances_from_map(prob, threshold=0.5, min_size=10)
    assert whole.max() == 1  # one hill: the saddle is shallower than the marker depth
    split = instances_from_map(prob, threshold=0.5, min_size=10, distance=edge_distance(inst))
    assert split.max() == 2
    for k in (1, 2):  # each part is mostly one of the two nuclei
        counts = np.bincount(inst[split == k], minlength=3)
        assert counts[1:].max() >= 0.9 * counts.sum()
    with pytest.raises(ValueError, match="shape"):
        instances_from_map(prob, distance=np.zeros((5, 5)))
