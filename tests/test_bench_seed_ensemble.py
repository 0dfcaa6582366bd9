import numpy as np
import pytest
import torch

from bench.seed_ensemble import named_softmax, posterior


def _tile():
    """Three bands: glass (white), stroma (pink) and nuclei (dark purple), 12 rows each."""
    rgb = np.zeros((36, 20, 3), np.uint8)
    rgb[:12] = (245, 245, 245)
    rgb[12:24] = (200, 120, 170)
    rgb[24:] = (80, 40, 130)
    return rgb


def _logits(raw_of_band):
    """Logits whose argmax is raw class ``raw_of_band[b]`` on band ``b`` (glass, stroma, nuclei)."""
    z = torch.zeros(3, 36, 20)
    for band, raw in enumerate(raw_of_band):
        z[raw, 12 * band : 12 * (band + 1)] = 4.0
    return z


def test_named_softmax_puts_classes_in_haematoxylin_order_whatever_the_raw_order():
    rgb = _tile()
    a = named_softmax(_logits([0, 1, 2]), rgb)
    b = named_softmax(_logits([2, 0, 1]), rgb)  # another checkpoint, its classes in another order
    assert a.shape == (3, 36, 20)
    assert torch.allclose(a, b)  # the same named posterior: the two can be averaged
    assert int(a[:, 30, 5].argmax()) == 2 and int(a[:, 5, 5].argmax()) == 0  # nuclei last, glass first
    assert torch.allclose(a.sum(0), torch.ones(36, 20))
    # averaged without naming, the two would disagree everywhere
    assert not torch.allclose(torch.softmax(_logits([0, 1, 2]), 0), torch.softmax(_logits([2, 0, 1]), 0))


def test_ssimnet_posterior_is_its_softmax_and_refuses_a_distance_output():
    z = torch.randn(2, 4, 5)
    assert torch.allclose(posterior(z, _tile()[:4, :5], "ssimnet"), torch.softmax(z, 0))
    try:
        posterior(torch.randn(3, 4, 5), _tile()[:4, :5], "ssimnet")
    except ValueError as e:
        assert "3 outputs" in str(e)
    else:
        raise AssertionError("a three-output SSimNet checkpoint was averaged")


class _Stub:
    """A segmenter whose network gives fixed logits and whose post-processing thresholds the nucleus softmax."""

    def __init__(self, logits):
        self.logits = logits

    def network_pass(self, rgb, name):
        return {"pred": self.logits.clone()}

    def postprocess(self, d):
        return (torch.softmax(d["pred"], 0)[1] > 0.5).numpy().astype(np.int32)


def test_ssimnet_ensemble_thresholds_the_mean_posterior():
    from bench.seed_ensemble import ensemble_instances

    rgb = _tile()[:1, :3]
    # nucleus probabilities 0.9 / 0.2 / 0.6 and 0.3 / 0.6 / 0.3: means 0.6 / 0.4 / 0.45
    p = [torch.tensor([[0.9, 0.2, 0.6]]), torch.tensor([[0.3, 0.6, 0.3]])]
    stubs = [_Stub(torch.log(torch.stack([1 - q, q]))) for q in p]
    assert ensemble_instances(stubs[:1], rgb, "t", "ssimnet").tolist() == [[1, 0, 1]]  # one checkpoint: its own
    assert ensemble_instances(stubs, rgb, "t", "ssimnet").tolist() == [[1, 0, 0]]


def test_member_overrides_must_name_every_member(tmp_path):
    from bench.seed_ensemble import run

    with pytest.raises(ValueError, match="1 member_overrides for 2 checkpoints"):
        run(str(tmp_path), str(tmp_path), "a.pt,b.pt", str(tmp_path / "out"), member_overrides=[{}])
