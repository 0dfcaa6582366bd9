"""Run a bundle's network on ONNX Runtime instead of PyTorch's eager CPU kernels, behind any MONAI inferer.

On a CPU without hardware bfloat16 (AVX2 only, where the bundles keep float32) ONNX Runtime's fused float32
convolutions run the bundles' networks in about three quarters of PyTorch eager's time, with the same masks
(``bench/results/speed/backends``: SSimNet 0.76×, DCGN 0.73×). The network is exported from its current weights, in memory, when the inferer first
meets it, and again whenever its weights change (test-time fine-tuning trains it per tile), so the inferer can stand
wherever the PyTorch network would. Optional: needs the ``onnx`` extra (``pip install "labelfree[onnx]"``).

The export costs about 1 s in a fresh process for SSimNet and 2–3 s for DCGN, which a run earns back within a few
1000² tiles. ``LABELFREE_ONNXRUNTIME=0`` keeps the bundles on PyTorch unless a config asks for ONNX Runtime (the test
suite sets it: its runs are on tiny tiles, where the export is all cost).
"""

from __future__ import annotations

import io
import os
import warnings
from functools import lru_cache
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["OnnxRuntimeInferer", "cpu_session", "default_onnxruntime", "export_onnx", "onnxruntime_available"]


@lru_cache(maxsize=1)
def onnxruntime_available() -> bool:
    """Whether ONNX Runtime and the ``onnx`` package torch's exporter needs are installed (the ``onnx`` extra)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def default_onnxruntime() -> bool:
    """Whether the bundles run their CPU networks on ONNX Runtime unless told otherwise: it is installed and the
    environment variable ``LABELFREE_ONNXRUNTIME`` is not ``0``."""
    return onnxruntime_available() and os.environ.get("LABELFREE_ONNXRUNTIME", "1").strip().lower() not in (
        "0",
        "false",
        "no",
    )


def export_onnx(network: torch.nn.Module, example: torch.Tensor, dynamic_batch: bool = False) -> bytes:
    """The network as an ONNX model (torch's TorchScript-based exporter, opset 17, eval mode), traced on ``example``;
    input ``input``, output ``output``; the batch size left free when ``dynamic_batch``."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the exporter's notes on the legacy path and traced shapes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (example,),
            buffer,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None,
            opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()


def cpu_session(model: bytes, threads: int) -> Any:
    """An ONNX Runtime CPU session of ``model`` on ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    # idle worker threads sleep instead of spinning: the bundles' post-processing threads share the cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _weights_key(network: torch.nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or updated in place (an optimiser step, ``load_state_dict``)."""
    return tuple((t.data_ptr(), t._version) for t in (*network.parameters(), *network.buffers()))


class OnnxRuntimeInferer(Inferer):
    """Run ``inferer`` with each call of the network replaced by an ONNX Runtime session of the same network.

    The network is exported (torch's TorchScript-based exporter, opset 17, in eval mode) for each input shape
    ``(B, C, H, W)`` it is called with (a sliding window has two: its batch and the last, smaller one), since a traced
    forward may fix the sizes it reads; and exported again when its weights change.
    Outputs are float32 tensors on the CPU, as the float32 network's. Inputs on another device, or ``enabled=False``,
    run ``inferer`` with the network itself.

    Args:
        inferer: the inferer that calls the network (e.g. a ``SlidingWindowInferer``).
        enabled: False runs ``inferer`` as it is (PyTorch).
        threads: ONNX Runtime's intra-op threads; ``None`` takes ``torch.get_num_threads()`` (the bundles'
            ``num_threads``).
    """

    def __init__(self, inferer: Inferer, enabled: bool = True, threads: int | None = None):
        super().__init__()
        self.inferer, self.enabled, self.threads = inferer, bool(enabled), threads
        if self.enabled and not onnxruntime_available():
            raise ImportError('ONNX Runtime is not installed: pip install "labelfree[onnx]", or run without it')
        self._sessions: dict[tuple, Any] = {}
        self._key: tuple | None = None

    def _session(self, network: torch.nn.Module, shape: tuple[int, ...]) -> Any:
        key = (id(network), _weights_key(network))
        if key != self._key:  # another network, or new weights: every exported shape is stale
            self._sessions, self._key = {}, key
        if shape not in self._sessions:
            model = export_onnx(network, torch.zeros(shape))
            self._sessions[shape] = cpu_session(model, self.threads or torch.get_num_threads())
        return self._sessions[shape]

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """
        Args:
            inputs: ``(B, C, *spatial)``.
            network: the ``torch.nn.Module`` ``inferer`` would call.

        Returns:
            ``inferer``'s output.
        """
        if not self.enabled or inputs.device.type != "cpu" or not isinstance(network, torch.nn.Module):
            return self.inferer(inputs, network, *args, **kwargs)
        was_training = network.training
        network.eval()

        def run(x: torch.Tensor) -> torch.Tensor:
            session = self._session(network, tuple(x.shape))
            array = x.detach().to(torch.float32).contiguous().numpy()
            return torch.from_numpy(session.run(None, {"input": array})[0])

        try:
            return self.inferer(inputs, run, *args, **kwargs)
        finally:
            network.train(was_training)
