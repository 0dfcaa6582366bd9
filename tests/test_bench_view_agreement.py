"""The view-agreement variant of SSimNet's half-seen rule (bench.view_agreement)."""

import numpy as np
import torch

from bench.ssimnet_variants import view_probabilities
from bench.view_agreement import agreed_objects


def test_an_object_one_view_half_sees_is_dropped_and_filled_holes_weigh_one():
    inst = np.zeros((20, 40), np.int32)
    inst[2:12, 2:12] = 1  # seen in both views
    inst[2:12, 20:30] = 2  # seen in the first view only
    inst[14:19, 2:12] = 3  # a ring: its centre is a filled hole of the averaged map, seen faintly in both views
    seen = np.where(inst == 3, 0.6, np.where(inst > 0, 0.9, 0.0))
    second = np.where(inst == 2, 0.2, seen)
    prob = (seen + second) / 2
    prob[15:18, 4:10] = 0.0  # the hole, at most the threshold in the averaged map
    first, second = seen.copy(), second.copy()
    first[15:18, 4:10] = second[15:18, 4:10] = 0.0
    assert first[inst == 3].mean() < 0.5  # without the hole weighing 1 the ring would go
    out = agreed_objects(inst, prob, [first, second], threshold=0.25, min_mean_prob=0.5)
    # object 2 averages 0.55 (kept by the default rule) but the second view gives it 0.2
    assert prob[inst == 2].mean() >= 0.5
    assert sorted(np.unique(out).tolist()) == [0, 1, 2]
    assert np.array_equal(out > 0, (inst == 1) | (inst == 3)) and out[3, 3] == 1 and out[16, 5] == 2
    assert np.array_equal(agreed_objects(inst, prob, [seen], 0.25, 0.5) > 0, inst > 0)


class _Flips:
    """A stand-in for FlipEnsembleInferer: the identity and a 180° turn of a re-coloured input."""

    flips = [[], [2, 3]]
    recoloured = [False, True]

    @staticmethod
    def recolour(img):
        return img * 0.5

    @staticmethod
    def inferer(x, network):
        return network(x)


def test_view_probabilities_average_the_logits_as_the_ensemble_does():
    torch.manual_seed(0)
    network = torch.nn.Conv2d(3, 2, 3, padding=1)
    image = torch.rand(1, 3, 8, 10)
    with torch.inference_mode():
        prob, views = view_probabilities(_Flips, image, network)
        plain, turned = network(image), network((image * 0.5).flip([2, 3])).flip([2, 3])
    assert len(views) == 2 and prob.shape == (8, 10)
    assert np.allclose(views[0], plain.softmax(1)[0, 1].numpy(), atol=1e-6)
    assert np.allclose(views[1], turned.softmax(1)[0, 1].numpy(), atol=1e-6)
    assert np.allclose(prob, ((plain + turned) / 2).softmax(1)[0, 1].numpy(), atol=1e-6)


def test_min_view_relief_equals_the_default_when_the_views_agree_and_cuts_on_a_one_view_dip():
    from bench.view_agreement import min_view_distance
    from labelfree.transforms.instances import instances_from_map

    yy, xx = np.mgrid[:40, :60]
    prob = np.zeros((40, 60))
    for cx in (28, 32):  # two overlapping discs, one blob in the average (the neck is too shallow to cut)
        prob[(yy - 20) ** 2 + (xx - cx) ** 2 <= 10**2] = 0.9
    kw = dict(threshold=0.25, min_size=10, h=2.0)
    same = instances_from_map(prob, distance=min_view_distance(prob, [prob, prob], 0.25), **kw)
    assert np.array_equal(same, instances_from_map(prob, **kw)) and same.max() == 1
    dipped = prob.copy()
    dipped[:, 29:32] = np.where(prob[:, 29:32] > 0, 0.3, 0.0)  # one view sees the line between them
    cut = instances_from_map(prob, distance=min_view_distance(prob, [prob, dipped], 0.25), **kw)
    assert cut.max() == 2 and np.array_equal(cut > 0, same > 0)  # split, same mask
