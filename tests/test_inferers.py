import pytest
import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer

from labelfree.engines.inferers import AutocastInferer, FlipEnsembleInferer, PaddedSlidingWindowInferer


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


def test_recoloured_passes_see_the_recoloured_input_computed_once_per_image():
    calls = []

    def invert(img):
        calls.append(tuple(img.shape))
        return 1.0 - img

    x = torch.rand(2, 3, 5, 7)
    code = torch.arange(35, dtype=torch.float32).reshape(1, 1, 5, 7)

    def net(t):
        return t + code

    inferer = FlipEnsembleInferer(SimpleInferer(), flips=[(), (-2, -1), (-1,)], recolour=invert, recoloured=[0, 1, 1])
    out = inferer(x, net)
    expected = (x + code + (1 - x) + code.flip((-2, -1)) + (1 - x) + code.flip(-1)) / 3
    torch.testing.assert_close(out, expected)
    assert calls == [(3, 5, 7), (3, 5, 7)]  # once per image of the batch, shared by both re-coloured passes
    plain = FlipEnsembleInferer(SimpleInferer(), flips=[(), (-2, -1)], recolour=invert)  # no pass named: as before
    torch.testing.assert_close(plain(x, net), FlipEnsembleInferer(SimpleInferer(), flips=[(), (-2, -1)])(x, net))
    with pytest.raises(ValueError, match="one flag per flip"):
        FlipEnsembleInferer(SimpleInferer(), flips=[()], recolour=invert, recoloured=[False, True])
    with pytest.raises(ValueError, match="no recolour"):
        FlipEnsembleInferer(SimpleInferer(), flips=[()], recoloured=[True])


def test_the_recolouring_runs_beside_the_first_pass_with_the_same_output():
    import threading

    started, threads = threading.Event(), []

    def invert(img):
        threads.append(threading.current_thread().name)
        started.set()
        return 1.0 - img

    def net(t):
        # the first (plain) pass waits until the re-colouring has begun: with the re-colouring on the calling thread
        # after this pass, it would never begin and the wait would time out
        if not threads:
            assert started.wait(timeout=10), "the re-colouring did not start during the first pass"
        return t * 2.0

    x = torch.rand(1, 3, 6, 6)
    flips, recoloured = [(), (-2, -1)], [False, True]
    out = FlipEnsembleInferer(SimpleInferer(), flips=flips, recolour=invert, recoloured=recoloured)(x, net)
    assert threads and threads[0].startswith("recolour")
    threads.clear()
    started.set()  # the foreground path re-colours after the first pass: nothing to wait for
    serial = FlipEnsembleInferer(
        SimpleInferer(), flips=flips, recolour=invert, recoloured=recoloured, background_recolour=False
    )(x, net)
    assert threads == [threading.current_thread().name]
    assert torch.equal(out, serial)


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


def test_padded_sliding_window_matches_monai_where_monai_works_and_handles_tiny_tiles():
    """torch's reflect padding needs pad < size, so a 64 px tile under a 256 px window crashed SSimNet."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 2, kernel_size=3, padding=1)
    kwargs = dict(roi_size=(64, 64), overlap=0.25, mode="gaussian", padding_mode="reflect")
    with torch.no_grad():
        for shape in [(40, 50), (64, 80), (100, 90)]:  # reflect works: the same output as MONAI's own padding
            x = torch.rand(1, 3, *shape)
            torch.testing.assert_close(
                PaddedSlidingWindowInferer(**kwargs)(x, net), SlidingWindowInferer(**kwargs)(x, net)
            )
        tiny = torch.rand(1, 3, 20, 12)
        with pytest.raises(RuntimeError):
            SlidingWindowInferer(**kwargs)(tiny, net)
        out = PaddedSlidingWindowInferer(**kwargs)(tiny, net)
    assert out.shape == (1, 2, 20, 12) and torch.isfinite(out).all()
    # the tile itself, not the padding, is what comes back: a pixel-wise network gives its own output
    pointwise = torch.nn.Conv2d(3, 2, kernel_size=1)
    with torch.no_grad():
        torch.testing.assert_close(PaddedSlidingWindowInferer(**kwargs)(tiny, pointwise), pointwise(tiny))


def test_autocast_returns_float32_and_can_be_off():
    net = torch.nn.Conv2d(3, 2, 3, padding=1)
    x = torch.rand(1, 3, 16, 16)
    on = AutocastInferer(SimpleInferer(), enabled=True, dtype="bfloat16")(x, net)
    off = AutocastInferer(SimpleInferer(), enabled=False)(x, net)
    assert on.dtype == off.dtype == torch.float32
    assert torch.allclose(on, off, atol=0.05) and not torch.equal(on, off)  # bfloat16 inside, float32 out


@pytest.mark.parametrize("bundle,key", [("ssimnet", "network_inferer"), ("dcgn", "inferer")])
@pytest.mark.parametrize("device", ["cpu", "$torch.device('cpu')"])
def test_bundle_inferers_parse_with_the_device_as_a_string_or_a_device(bundle, key, device):
    # MONAI Label sets the bundle's device to a string; the bundles' own runs to a torch.device
    from monai.bundle import ConfigParser

    from bundle_runner import REPO

    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(REPO / "bundles" / bundle)
    parser["device"] = device
    parser["cpu_bf16"] = True
    inferer = parser.get_parsed_content(key, lazy=False)
    assert isinstance(inferer, AutocastInferer) and inferer.enabled


@pytest.mark.parametrize("cpu_bf16", [False, True])
def test_ssimnet_training_autocasts_only_when_asked_and_still_learns_in_float32(cpu_bf16):
    # train.json's cpu_bf16 runs the training forward pass under bfloat16 autocast; weights, gradients and the loss's
    # input stay float32, so the optimiser and the checkpoint do not change kind
    from monai.bundle import ConfigParser

    from bundle_runner import REPO

    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "ssimnet" / "configs" / "train.json"))
    parser["bundle_root"] = str(REPO / "bundles" / "ssimnet")
    parser["device"] = "$torch.device('cpu')"
    parser["cpu_bf16"] = cpu_bf16
    inferer = parser.get_parsed_content("train#inferer", lazy=False)
    assert isinstance(inferer, AutocastInferer) and inferer.enabled is cpu_bf16
    net = torch.nn.Conv2d(3, 2, 3, padding=1)
    out = inferer(torch.rand(2, 3, 16, 16), net)
    out.square().mean().backward()
    assert out.dtype == torch.float32 and net.weight.grad is not None and net.weight.grad.dtype == torch.float32
