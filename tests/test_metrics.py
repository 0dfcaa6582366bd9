import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.handlers import IgniteMetricHandler
from monai.metrics import compute_panoptic_quality
from skimage.measure import label

from labelfree.core.metrics import (
    InstanceSegmentationMetric,
    NMIMetric,
    aji,
    aji_plus,
    instance_scores,
    nmi,
    panoptic_quality,
    pixel_scores,
)


@pytest.fixture
def merged_case():
    """Two touching nuclei covered by one predicted blob, plus one exactly predicted nucleus (all areas 24)."""
    gt = np.zeros((20, 30), int)
    gt[2:8, 2:6], gt[2:8, 6:10], gt[12:18, 12:16] = 1, 2, 3
    pred = np.zeros_like(gt)
    pred[2:8, 2:10], pred[12:18, 12:16] = 5, 9
    return gt, pred


def test_hand_computed_aji(merged_case):
    gt, pred = merged_case
    # official: both nuclei match the blob: (24 + 24 + 24) / (48 + 48 + 24) = 0.6
    assert aji(gt, pred) == pytest.approx(0.6)
    # one-to-one: (24 + 24) / (48 + 24 + 24) = 0.5
    assert aji_plus(gt, pred) == pytest.approx(0.5)
    s = pixel_scores(gt, pred)
    assert s == {"dice": 1.0, "precision": 1.0, "recall": 1.0}


def test_aji_unmatched_and_false_positive():
    gt = np.zeros((10, 20), int)
    gt[1:3, 1:3] = 1  # 4 px, missed
    gt[5:9, 5:9] = 2  # 16 px, predicted with 8 px extra
    pred = np.zeros_like(gt)
    pred[5:9, 5:11] = 1  # 24 px
    pred[0:2, 15:19] = 2  # 8 px false positive
    assert aji(gt, pred) == pytest.approx(16 / (4 + 24 + 8))
    assert aji_plus(gt, pred) == pytest.approx(16 / (4 + 24 + 8))
    assert pixel_scores(gt, pred)["precision"] == pytest.approx(16 / 32)
    assert pixel_scores(gt, pred)["recall"] == pytest.approx(16 / 20)


def test_empty_conventions():
    z = np.zeros((8, 8), int)
    one = z.copy()
    one[2:4, 2:4] = 1
    assert instance_scores(z, z)["aji"] == 1.0
    assert instance_scores(z, one)["aji"] == 0.0 and instance_scores(one, z)["dice"] == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_pq_same_as_monai(seed):
    rng = np.random.default_rng(seed)
    gt = label(rng.random((40, 40)) > 0.55)
    pred = label(rng.random((40, 40)) > 0.55)
    pred[gt > 0] = np.where(rng.random((40, 40)) > 0.3, gt, pred)[gt > 0]  # some good matches
    for name in ("pq", "sq", "rq"):
        ref = float(compute_panoptic_quality(torch.as_tensor(pred), torch.as_tensor(gt), metric_name=name))
        assert panoptic_quality(gt, pred)[name] == pytest.approx(ref, abs=1e-4)


def dense_aji_plus(gt, pred):
    """AJI+ with one Hungarian assignment over the full IoU matrix (HoVer-Net's formulation)."""
    from scipy.optimize import linear_sum_assignment

    g_ids, p_ids = np.unique(gt)[1:], np.unique(pred)[1:]
    inter = np.array([[np.sum((gt == g) & (pred == p)) for p in p_ids] for g in g_ids], float)
    ga = np.array([np.sum(gt == g) for g in g_ids])
    pa = np.array([np.sum(pred == p) for p in p_ids])
    iou = inter / (ga[:, None] + pa[None] - inter)
    r, c = linear_sum_assignment(-iou)
    keep = iou[r, c] > 0
    r, c = r[keep], c[keep]
    i = inter[r, c].sum()
    u = (ga[r] + pa[c] - inter[r, c]).sum() + np.delete(ga, r).sum() + np.delete(pa, c).sum()
    return i / u


@pytest.mark.parametrize("seed", range(3))
def test_aji_plus_matches_dense_hungarian_and_ids_do_not_matter(seed):
    rng = np.random.default_rng(seed)
    gt = label(rng.random((50, 50)) > 0.6)
    pred = label(rng.random((50, 50)) > 0.6)
    assert aji_plus(gt, pred) == pytest.approx(dense_aji_plus(gt, pred))
    perm = np.concatenate([[0], rng.permutation(np.arange(1, pred.max() + 1)) + 100])
    assert instance_scores(gt, perm[pred]) == pytest.approx(instance_scores(gt, pred))


def test_nmi():
    a = np.random.default_rng(0).integers(0, 3, (50, 50))
    assert nmi(a, a) == pytest.approx(1.0)
    assert nmi(a, (a + 1) % 3) == pytest.approx(1.0)  # class names do not matter
    assert nmi(a, np.zeros_like(a)) == pytest.approx(0.0)
    b = np.zeros((4, 4), int)
    b[:, 2:] = 1
    c = np.zeros((4, 4), int)
    c[:2] = 1  # independent of b
    assert nmi(b, c) == pytest.approx(0.0, abs=1e-12)


def test_monai_metric_classes_and_ignite(merged_case):
    gt, pred = merged_case
    y = torch.as_tensor(np.stack([gt, gt]))[:, None]
    p = torch.as_tensor(np.stack([pred, gt]))[:, None]
    m = InstanceSegmentationMetric("aji")
    m(p, y)
    assert m.aggregate().item() == pytest.approx((0.6 + 1.0) / 2)
    assert NMIMetric()(p, y).shape == (2, 1)
    engine = Engine(lambda eng, batch: batch)  # an evaluator whose output is (y_pred, y)
    IgniteMetricHandler(metric_fn=InstanceSegmentationMetric("aji_plus"), output_transform=lambda o: o).attach(
        engine, "aji_plus"
    )
    engine.run([(p, y)])
    assert engine.state.metrics["aji_plus"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="metric_name"):
        InstanceSegmentationMetric("hausdorff")
