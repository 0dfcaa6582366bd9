import pytest
import torch

from bundle_runner import import_bundle_module

_loss = import_bundle_module("ssimnet", "loss")
SSimNetLoss = _loss.SSimNetLoss


def target(soft, tri):
    return torch.stack([soft, tri.float()], dim=1)


def test_ce_ignores_the_ignore_index():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 8, 8, generator=g)
    tri = torch.full((2, 8, 8), 2)
    tri[:, :2] = 1
    tri[:, -2:] = 0
    loss = SSimNetLoss(lam=0.0)
    base = loss(logits, target(torch.zeros(2, 8, 8), tri))
    changed = logits.clone()
    changed[:, :, 3:5] = torch.randn(2, 2, 2, 8, generator=g) * 10  # only ignored pixels change
    assert torch.allclose(loss(changed, target(torch.zeros(2, 8, 8), tri)), base)


def test_all_ignored_is_finite_and_has_gradient():
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    out = SSimNetLoss(lam=0.9)(logits, target(torch.full((1, 4, 4), 0.7), torch.full((1, 4, 4), 2)))
    assert torch.isfinite(out)
    out.backward()
    assert logits.grad.abs().sum() > 0


def test_soft_target_is_the_bce_minimum():
    soft = torch.full((1, 4, 4), 0.75)
    tri = torch.full((1, 4, 4), 2)
    loss = SSimNetLoss(lam=1.0)

    def at(p):
        z = torch.log(torch.tensor(p / (1 - p)))
        logits = torch.stack([torch.zeros(1, 4, 4), torch.full((1, 4, 4), float(z))], dim=1)
        return loss(logits, target(soft, tri)).item()

    assert at(0.75) < at(0.7) and at(0.75) < at(0.8) and at(0.75) < at(0.95)


def test_weighting_and_shapes():
    logits = torch.randn(1, 2, 4, 4)
    t = target(torch.rand(1, 4, 4), torch.randint(0, 3, (1, 4, 4)))
    full = SSimNetLoss(0.9)(logits, t)
    assert torch.allclose(full, 0.9 * SSimNetLoss(1.0)(logits, t) + 0.1 * SSimNetLoss(0.0)(logits, t))
    with pytest.raises(ValueError):
        SSimNetLoss()(torch.randn(1, 4, 4, 4), t)
    with pytest.raises(ValueError):
        SSimNetLoss()(torch.randn(1, 2, 4, 5), t)


def test_negative_soft_label_is_left_out_of_the_bce():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 2, 8, 8, generator=g, requires_grad=True)
    soft = torch.rand(2, 8, 8, generator=g)
    soft[:, 2:4] = -1.0  # self-training's ignored pixels
    tri = torch.full((2, 8, 8), 2)
    out = SSimNetLoss(lam=1.0)(logits, target(soft, tri))
    known = soft >= 0
    margin = logits[:, 1] - logits[:, 0]
    expected = torch.nn.functional.binary_cross_entropy_with_logits(margin[known], soft[known])
    assert torch.allclose(out, expected)
    out.backward()
    assert logits.grad[:, :, 2:4].abs().sum() == 0 and logits.grad[:, :, 4:].abs().sum() > 0
    # nothing known at all: finite, zero
    none = SSimNetLoss(lam=1.0)(logits, target(torch.full((2, 8, 8), -1.0), tri))
    assert torch.isfinite(none) and none.item() == 0.0


def test_a_third_output_regresses_the_distance_target_where_it_is_known():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    seg = target(torch.rand(2, 8, 8, generator=g), torch.randint(0, 3, (2, 8, 8), generator=g))
    dist = torch.rand(2, 1, 8, 8, generator=g)
    dist[:, :, :3] = -1.0  # left out
    loss = SSimNetLoss(0.9, distance_weight=0.5)
    known = dist[:, 0] >= 0
    expected = SSimNetLoss(0.9)(logits[:, :2], seg) + 0.5 * ((logits[:, 2] - dist[:, 0])[known] ** 2).mean()
    assert torch.allclose(loss(logits, torch.cat([seg, dist], dim=1)), expected)
    # a target without the distance (test-time fine-tuning's pseudo labels) trains the class outputs only
    assert torch.allclose(loss(logits, seg), SSimNetLoss(0.9)(logits[:, :2], seg))
    # a distance target left out everywhere adds nothing, and still back-propagates
    logits.requires_grad_(True)
    out = loss(logits, torch.cat([seg, torch.full_like(dist, -1.0)], dim=1))
    out.backward()
    assert torch.allclose(out, SSimNetLoss(0.9)(logits[:, :2], seg))
    with pytest.raises(ValueError, match="no more target channels"):
        SSimNetLoss()(logits[:, :2], torch.cat([seg, dist], dim=1))


def test_a_weight_channel_scales_each_pixels_loss():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 2, 6, 6, generator=g)
    soft = torch.rand(2, 6, 6, generator=g)
    soft[:, 0] = -1.0  # left out of the BCE
    tri = torch.randint(0, 3, (2, 6, 6), generator=g)
    t = target(soft, tri)
    ones = torch.cat([t, torch.ones(2, 1, 6, 6)], dim=1)
    plain = SSimNetLoss(0.9)(logits, t)
    assert torch.allclose(SSimNetLoss(0.9, weighted=True)(logits, ones), plain)
    # twice the weight on every pixel: twice the loss; a weight on the left-out pixels changes nothing
    assert torch.allclose(SSimNetLoss(0.9, weighted=True)(logits, torch.cat([t, 2 * ones[:, 2:]], 1)), 2 * plain)
    heavy = ones.clone()
    heavy[:, 2][(soft < 0) & (tri == 2)] = 50.0  # pixels neither term covers
    assert bool(((soft < 0) & (tri == 2)).any())
    assert torch.allclose(SSimNetLoss(0.9, weighted=True)(logits, heavy), plain)
    # a heavier pixel pulls the loss towards its own
    one = ones.clone()
    one[0, 2, 3, 3] = 100.0
    assert not torch.allclose(SSimNetLoss(1.0, weighted=True)(logits, one), SSimNetLoss(1.0)(logits, t))
    with pytest.raises(ValueError):
        SSimNetLoss(weighted=True)(logits, t[:, :1])
