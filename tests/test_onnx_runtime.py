import pytest
import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.networks.nets import UNet

import labelfree.engines.onnx_runtime as onnx_runtime
from bundle_runner import REPO
from labelfree.engines.onnx_runtime import OnnxRuntimeInferer, default_onnxruntime, onnxruntime_available
from labelfree.engines.slides import bundle_parser

needs_ort = pytest.mark.skipif(
    not onnxruntime_available(), reason='needs the onnx extra: pip install "labelfree[onnx]"'
)


def _unet() -> torch.nn.Module:
    torch.manual_seed(0)
    return UNet(2, 3, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=0).eval()


@needs_ort
def test_sliding_window_on_onnx_runtime_matches_the_torch_network():
    net = _unet()
    x = torch.rand(1, 3, 90, 70)
    sw = SlidingWindowInferer(roi_size=(32, 32), sw_batch_size=3, overlap=0.25, mode="gaussian")
    with torch.no_grad():
        ref = sw(x, net)
        out = OnnxRuntimeInferer(sw)(x, net)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


@needs_ort
def test_the_same_input_gives_the_same_bytes():
    net, x = _unet(), torch.rand(2, 3, 32, 32)
    inferer = OnnxRuntimeInferer(SimpleInferer())
    with torch.no_grad():
        assert torch.equal(inferer(x, net), inferer(x, net))


@needs_ort
def test_new_weights_are_exported_again():
    # test-time fine-tuning trains the network between tiles: the session must follow its weights
    net, x = _unet(), torch.rand(1, 3, 32, 32)
    inferer = OnnxRuntimeInferer(SimpleInferer())
    with torch.no_grad():
        before = inferer(x, net)
        for p in net.parameters():
            p.mul_(0.5)  # in place, as an optimiser step
        after = inferer(x, net)
        torch.testing.assert_close(after, net(x), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(before, after)


@needs_ort
def test_the_network_keeps_its_mode():
    net, x = _unet().train(), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        OnnxRuntimeInferer(SimpleInferer())(x, net)
    assert net.training


def test_off_runs_the_torch_network():
    net, x = _unet(), torch.rand(1, 3, 32, 32)
    calls = []

    def network(batch):
        calls.append(batch.shape)
        return net(batch)

    with torch.no_grad():
        out = OnnxRuntimeInferer(SimpleInferer(), enabled=False)(x, network)
    assert calls == [x.shape] and torch.equal(out, net(x))


def test_asking_for_it_without_the_extra_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(onnx_runtime, "onnxruntime_available", lambda: False)
    with pytest.raises(ImportError, match=r"labelfree\[onnx\]"):
        OnnxRuntimeInferer(SimpleInferer(), enabled=True)
    assert not OnnxRuntimeInferer(SimpleInferer(), enabled=False).enabled


@pytest.mark.parametrize("bundle", ["ssimnet", "dcgn"])
@pytest.mark.parametrize("bf16", [True, False])
@pytest.mark.parametrize("env", ["1", "0"])
def test_bundles_take_onnx_runtime_only_where_the_cpu_has_no_bfloat16(bundle, bf16, env, monkeypatch):
    monkeypatch.setenv("LABELFREE_ONNXRUNTIME", env)
    parser = bundle_parser(REPO / "bundles" / bundle, {"device": "cpu", "cpu_bf16": bf16})
    inferer = parser.get_parsed_content("onnx_inferer", lazy=False)
    assert inferer.enabled == (onnxruntime_available() and not bf16 and env == "1")


def test_the_environment_switches_the_default_off(monkeypatch):
    for value, expected in (
        ("0", False),
        ("false", False),
        ("1", onnxruntime_available()),
        ("", onnxruntime_available()),
    ):
        monkeypatch.setenv("LABELFREE_ONNXRUNTIME", value)
        assert default_onnxruntime() == expected
    monkeypatch.delenv("LABELFREE_ONNXRUNTIME")
    assert default_onnxruntime() == onnxruntime_available()


@needs_ort
def test_dcgn_network_on_onnx_runtime_matches_torch():
    from bundle_runner import import_bundle_module

    network = import_bundle_module("dcgn", "network")
    torch.manual_seed(0)
    net = network.MobileNetV2UNet(in_channels=3, out_channels=3).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(OnnxRuntimeInferer(SimpleInferer())(x, net), net(x), atol=1e-4, rtol=1e-4)


def test_ssimnet_fine_tuning_runs_on_torch():
    # fine-tuning changes the weights on every tile: an export per tile would cost more than it saves
    parser = bundle_parser(REPO / "bundles" / "ssimnet", {"cpu_bf16": False, "cpu_onnxruntime": True, "finetune": True})
    assert not parser.get_parsed_content("onnx_inferer", lazy=False).enabled


@pytest.mark.slow  # two bundle runs (about 20 s); the inferer's tests above cover the same path on small networks
@needs_ort
def test_ssimnet_bundle_on_onnx_runtime_writes_the_masks_of_pytorch(tmp_path):
    # the shipped checkpoint on the embedded sample, the user's command, with and without ONNX Runtime
    from bundle_runner import run_bundle_ok
    from labelfree.core.imageio import load_instance_map

    outputs = {}
    for flag in (True, False):
        out = tmp_path / f"ort_{flag}"
        run_bundle_ok("ssimnet", ("inference",), tmp_path, output_dir=out, cpu_bf16=False, cpu_onnxruntime=flag)
        outputs[flag] = {p.name: load_instance_map(p) for p in sorted(out.glob("*_inst.tif"))}
    assert len(outputs[True]) == 3 and outputs[True].keys() == outputs[False].keys()
    for name, inst in outputs[True].items():
        other = outputs[False][name]
        # float32 kernels of the two runtimes round differently: a pixel on the threshold may flip, no more
        assert ((inst > 0) != (other > 0)).mean() < 1e-4, name
