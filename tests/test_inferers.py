import pytest
import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer

from labelfree.inferers import FlipEnsembleInferer


def test_orientation_free_network_gives_the_single_pass():
    net = torch.nn.Conv2d(3, 2, kernel_size=1)
    x = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        assert torch.allclose(FlipEnsembleInferer(SimpleInferer())(x, net), net(x), atol=1e-6)


def test_outputs_are_flipped_back_before_averaging():
    # a network that adds a position code: the de-flipped passes carry the code mirrored, so the mean is the
    # input plus the code's average over the four mirror images
    h, w = 6, 8
    code = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w)

    def net(x):
        return x + code

    x = torch.rand(1, 1, h, w)
    out = FlipEnsembleInferer(SimpleInferer())(x, net)
    mirrored = (code + code.flip(-1) + code.flip(-2) + code.flip((-2, -1))) / 4
    assert torch.allclose(out, x + mirrored)
    # only the unflipped pass: the plain inferer
    assert torch.allclose(FlipEnsembleInferer(SimpleInferer(), flips=[()])(x, net), x + code)


def test_wraps_a_sliding_window():
    net = torch.nn.Conv2d(3, 2, kernel_size=3, padding=1)
    x = torch.rand(1, 3, 50, 40)
    sw = SlidingWindowInferer(roi_size=(32, 32), overlap=0.25)
    with torch.no_grad():
        out = FlipEnsembleInferer(sw)(x, net)
    assert out.shape == (1, 2, 50, 40) and torch.isfinite(out).all()


@pytest.mark.parametrize("flips", [[], [(2,)], [(-1,), (0,)]])
def test_bad_flips(flips):
    with pytest.raises(ValueError, match="flip"):
        FlipEnsembleInferer(SimpleInferer(), flips=flips)
