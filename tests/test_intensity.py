import colorsys

import numpy as np
import pytest
import torch

from labelfree.transforms.intensity import (
    MinMaxNormalize,
    MinMaxNormalized,
    RandHueSaturation,
    RandHueSaturationd,
    hsv_to_rgb,
    rgb_to_hsv,
)


def test_minmax_per_channel():
    x = torch.stack([torch.linspace(10, 20, 16), torch.linspace(-1, 1, 16), torch.full((16,), 5.0)]).reshape(3, 4, 4)
    y = MinMaxNormalize()(x)
    assert torch.allclose(y[0].min(), torch.tensor(0.0)) and torch.allclose(y[0].max(), torch.tensor(1.0))
    assert torch.allclose(y[1].max(), torch.tensor(1.0)) and (y[2] == 0).all()
    assert torch.equal(MinMaxNormalized("img")({"img": x})["img"], y)
    with pytest.raises(ValueError, match="NaN"):
        MinMaxNormalize()(torch.full((3, 4, 4), float("nan")))


def test_hsv_matches_colorsys_and_roundtrips():
    rgb = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(0))
    hsv = rgb_to_hsv(rgb)
    for y, x in [(0, 0), (5, 7), (19, 3)]:
        ref = colorsys.rgb_to_hsv(*rgb[:, y, x].tolist())
        assert np.allclose(hsv[:, y, x].numpy(), ref, atol=1e-5)
    assert torch.allclose(hsv_to_rgb(hsv), rgb, atol=1e-5)


def test_hue_saturation_augmentation():
    img = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1)) * 255
    t = RandHueSaturation(hue=0.12, saturation=(0.5, 1.5))
    t.set_random_state(7)
    a = t(img)
    t.set_random_state(7)
    assert torch.equal(t(img), a)
    assert abs(t._shift) <= 0.12 and 0.5 <= t._factor <= 1.5
    assert torch.allclose(rgb_to_hsv(a)[2], rgb_to_hsv(img)[2], atol=1e-3)  # value channel untouched
    ident = RandHueSaturation(hue=0.0, saturation=(1.0, 1.0))
    assert torch.allclose(ident(img), img, atol=1e-3)
    d = RandHueSaturationd(["a", "b"]).set_random_state(3)({"a": img, "b": img.clone()})
    assert torch.allclose(d["a"], d["b"])  # one draw for all keys
    with pytest.raises(ValueError, match="non-negative"):
        RandHueSaturation()(img - 300)
