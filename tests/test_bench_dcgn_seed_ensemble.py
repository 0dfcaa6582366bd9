import numpy as np
import torch

from bench.dcgn_seed_ensemble import named_softmax


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
