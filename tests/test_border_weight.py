import numpy as np
import pytest
import torch

from labelfree.transforms.border_weight import BorderWeight, BorderWeightd, border_weight


def _two_discs(gap: int) -> np.ndarray:
    """Two discs of radius 10 on one row, ``gap`` background pixels apart (0: touching)."""
    yy, xx = np.mgrid[:40, :80]
    inst = np.zeros((40, 80), np.int32)
    inst[(yy - 20) ** 2 + (xx - 20) ** 2 <= 100] = 1
    inst[(yy - 20) ** 2 + (xx - 41 - gap) ** 2 <= 100] = 2
    return inst


def test_the_gap_between_two_nuclei_weighs_most_and_open_background_weighs_one():
    inst = _two_discs(gap=4)
    w = border_weight(inst, w0=10.0, sigma=5.0)
    assert w.dtype == np.float32 and w.shape == inst.shape
    assert np.all(w[inst > 0] == 1.0)  # nuclei that do not touch weigh 1
    # the middle of the 4-pixel gap: 2 or 3 px from each disc, d1 + d2 = 5 -> 1 + 10 exp(-25 / 50)
    row = w[20, 31:35]
    np.testing.assert_allclose(row, 1 + 10 * np.exp(-25 / 50), rtol=1e-5)
    # beside one disc only (left edge of the tile): no second nucleus within reach
    assert w[20, 0] == pytest.approx(1.0)
    # far corners: exactly 1
    assert w[0, 79] == 1.0
    # a wider gap weighs less
    assert border_weight(_two_discs(gap=10))[20, 36] < row.min()


def test_touching_nuclei_make_their_contact_line_the_heaviest():
    inst = _two_discs(gap=0)
    w = border_weight(inst)
    contact = w[20, 30:32]  # the last pixel of disc 1 and the first of disc 2
    assert np.all(contact > 10.0)  # d1 = 0, d2 = 1: 1 + 10 exp(-1 / 50)
    assert w[20, 20] == 1.0 and w[20, 41] == 1.0  # the nuclei's centres
    assert contact.min() == w.max()


def test_one_nucleus_or_none_gives_weight_one():
    inst = _two_discs(gap=4)
    inst[inst == 2] = 0
    assert np.all(border_weight(inst) == 1.0)
    assert np.all(border_weight(np.zeros((5, 5), np.uint16)) == 1.0)
    assert np.all(border_weight(_two_discs(0), w0=0.0) == 1.0)
    with pytest.raises(ValueError):
        border_weight(np.zeros((2, 5, 5), np.int32))
    with pytest.raises(ValueError):
        border_weight(inst, sigma=0.0)


def test_the_array_transform_keeps_the_type_and_the_dictionary_twin_writes_its_key():
    inst = _two_discs(gap=2)[None]
    ref = border_weight(inst[0])
    out = BorderWeight()(torch.as_tensor(inst))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 40, 80)
    np.testing.assert_array_equal(out[0].numpy(), ref)
    d = BorderWeightd("label")({"label": inst})
    assert isinstance(d["label_weight"], np.ndarray) and np.array_equal(d["label_weight"][0], ref)
    with pytest.raises(ValueError):
        BorderWeight()(inst[0])


def test_on_nuclei_weights_both_sides_of_a_gap_alike():
    inst = _two_discs(gap=2)
    plain, both = border_weight(inst), border_weight(inst, on_nuclei=True)
    gap = inst == 0
    np.testing.assert_array_equal(both[gap], plain[gap])  # the background is weighted as before
    # the rim pixel of disc 1 facing disc 2 (3 px away: d1 = 0, d2 = 3) against the background pixel beside it
    np.testing.assert_allclose(both[20, 30], 1 + 10 * np.exp(-9 / 50), rtol=1e-5)
    assert plain[20, 30] == 1.0
    # the centre of disc 1, 13 px from disc 2, weighs less than its rim; the far side of disc 1 hardly more than 1
    np.testing.assert_allclose(both[20, 20], 1 + 10 * np.exp(-169 / 50), rtol=1e-5)
    assert both[20, 10] == pytest.approx(1.0, abs=1e-3)
    assert BorderWeight(on_nuclei=True)(inst[None])[0, 20, 30] == both[20, 30]
