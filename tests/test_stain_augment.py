import numpy as np
import pytest
import torch

from labelfree.transforms.stain_augment import HED_FROM_RGB_STAINS, RandHEDJitter, RandHEDJitterd


def _rgb(conc_h: float, conc_e: float) -> torch.Tensor:
    od = conc_h * HED_FROM_RGB_STAINS[0] + conc_e * HED_FROM_RGB_STAINS[1]
    return torch.as_tensor(np.exp(-od), dtype=torch.float32)[:, None, None].repeat(1, 4, 4)


def test_no_jitter_is_the_identity_and_white_stays_white():
    img = torch.cat([_rgb(0.8, 0.2), torch.ones(3, 4, 4)], dim=1)
    out = RandHEDJitter(scale=0.0, shift=0.0)(img)
    assert isinstance(out, torch.Tensor) and out.shape == img.shape and out.dtype == torch.float32
    assert torch.allclose(out, img, atol=1e-5)
    assert torch.allclose(RandHEDJitter(scale=0.3, shift=0.0)(torch.ones(3, 4, 4)), torch.ones(3, 4, 4))


def test_more_haematoxylin_darkens_a_nucleus_mostly_in_red():
    t = RandHEDJitter(scale=0.0, shift=0.0)
    t._do_transform, t._a, t._b = True, np.array([1.5, 1.0, 1.0]), np.zeros(3)
    nucleus = _rgb(0.8, 0.2)
    out = t(nucleus, randomize=False)
    assert (out < nucleus).all()
    rel = (nucleus - out)[:, 0, 0] / nucleus[:, 0, 0]
    assert rel[0] > rel[2]  # haematoxylin absorbs red more than blue
    # the eosin concentration is untouched: unmixing the result gives back 0.2
    od = -np.log(out[:, 0, 0].double().numpy())
    conc = np.linalg.solve(HED_FROM_RGB_STAINS.T, od)
    assert conc[1] == pytest.approx(0.2, abs=1e-4) and conc[0] == pytest.approx(1.2, abs=1e-4)


def test_same_seed_same_draw_and_dict_twin_shares_it():
    img = torch.rand(3, 8, 8)
    a = RandHEDJitter().set_random_state(3)(img)
    b = RandHEDJitter().set_random_state(3)(img)
    assert torch.equal(a, b) and not torch.equal(a, img)
    d = RandHEDJitterd(["x", "y"]).set_random_state(5)({"x": img, "y": img.clone(), "z": img})
    assert torch.equal(d["x"], d["y"]) and d["z"] is img
    with pytest.raises(ValueError, match="RGB"):
        RandHEDJitter()(torch.rand(1, 4, 4))
