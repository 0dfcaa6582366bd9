"""Benchmark: one network, the same tiles, every CPU runtime the speed issue names, side by side in one run.

For each bundle's network (its shipped weights, its sliding window on whole 1000² tiles, 2 threads) and each way of
running it, the marginal seconds per tile (median of ``rounds`` rounds, the runtimes taking turns within a round, so
the host's drift lands on all of them), the ratio to PyTorch eager float32, and how far its output is from eager's:
the largest logit difference and the number of pixels whose mask changes (SSimNet: nucleus probability > 0.25, the
bundle's threshold; DCGN: the arg-max class). A runtime is worth keeping only when it is faster at equal masks.

Runtimes: PyTorch eager float32; channels-last memory format; TorchScript (traced and frozen); ``torch.compile``
(Inductor, when a C++ compiler is present; its compile time is reported apart); bfloat16 autocast (emulated, and slow,
on a CPU without AVX512-BF16 / AMX); ONNX Runtime float32 (``labelfree.engines.onnx_runtime``, what the bundles use
on such CPUs); ONNX Runtime int8 (static QDQ quantisation calibrated on crops of the first tiles).

    python -m bench.network_backends --images ../shared/data/monuseg/train/images --out bench/results/speed/backends
"""

from __future__ import annotations

import copy
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path

import fire
import numpy as np
import torch
from monai.inferers import SlidingWindowInferer

from bench.report_files import save_report
from bench.speed import shipped_network, tile_tensors
from labelfree.core.imageio import list_images
from labelfree.engines.inferers import native_bf16_cpu
from labelfree.engines.onnx_runtime import OnnxRuntimeInferer, cpu_session, export_onnx, onnxruntime_available


def _int8_session(net: torch.nn.Module, window: tuple[int, int], crops: list[np.ndarray], threads: int) -> Callable:
    """ONNX Runtime on the network quantised to int8 (QDQ, per-tensor activations calibrated on ``crops``)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": c[None]} for c in crops])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        fp32.write_bytes(export_onnx(net, torch.zeros(1, 3, *window), dynamic_batch=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(fp32), str(int8), Crops(), quant_format=QuantFormat.QDQ, weight_type=QuantType.QInt8)
        session = cpu_session(int8.read_bytes(), threads)
    return lambda x: torch.from_numpy(session.run(None, {"input": x.contiguous().numpy()})[0])


def _runtimes(
    net: torch.nn.Module, sw: SlidingWindowInferer, crops: list[np.ndarray], threads: int, bf16: bool
) -> dict:
    """name → (a function tile → logits, seconds of one-time preparation)."""
    window = tuple(sw.roi_size)
    example = torch.zeros(1, 3, *window)
    out: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], float]] = {"eager float32": (lambda x: sw(x, net), 0)}
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)  # the same weights, laid out channels-last
    out["channels-last"] = (lambda x: sw(x.contiguous(memory_format=torch.channels_last), cl), 0)
    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.freeze(torch.jit.trace(net, example))
    out["TorchScript (trace + freeze)"] = (lambda x: sw(x, scripted), time.perf_counter() - start)
    try:
        start = time.perf_counter()
        compiled = torch.compile(net)
        with torch.no_grad():
            compiled(torch.zeros(sw.sw_batch_size, 3, *window))
        out["torch.compile (Inductor)"] = (lambda x: sw(x, compiled), time.perf_counter() - start)
    except Exception as err:  # no C++ compiler, or an unsupported op: reported, not fatal
        print(f"torch.compile unavailable: {type(err).__name__}: {str(err).splitlines()[0][:120]}", file=sys.stderr)

    def autocast_bf16(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return sw(x, net).float()

    if bf16:
        out["bfloat16 autocast" + ("" if native_bf16_cpu() else " (emulated on this CPU)")] = (autocast_bf16, 0)
    if onnxruntime_available():
        ort_inferer = OnnxRuntimeInferer(sw, threads=threads)
        start = time.perf_counter()
        with torch.no_grad():
            ort_inferer(torch.zeros(1, 3, *window), net)
        out["ONNX Runtime float32 (the bundles' runtime here)"] = (
            lambda x: ort_inferer(x, net),
            time.perf_counter() - start,
        )
        start = time.perf_counter()
        int8 = _int8_session(net, window, crops, threads)
        out["ONNX Runtime int8 (static, QDQ)"] = (lambda x: sw(x, int8), time.perf_counter() - start)
    return out


def _mask(bundle: str, logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(1)[:, 1] > 0.25 if bundle == "ssimnet" else logits.argmax(1)


def run(
    images: str,
    out: str = "bench/results/speed/backends",
    bundles: str | tuple = "ssimnet,dcgn",
    tiles: int = 4,
    rounds: int = 3,
    threads: int = 2,
    bf16: str | tuple = "auto",
) -> dict:
    """Time every runtime of every bundle's network on the first ``tiles`` (+1 warm-up) tiles; write
    ``backends.{json,md}``. ``bf16``: the bundles whose bfloat16 row runs ("auto": all where the CPU computes bfloat16
    in hardware, none elsewhere, where it is emulated and DCGN's row alone would take many minutes)."""
    if bf16 == "auto":
        bf16 = bundles if native_bf16_cpu() else ""
    bf16_bundles = bf16.split(",") if isinstance(bf16, str) else list(bf16)
    torch.set_num_threads(threads)
    files = list_images(images)[: tiles + 1]
    tensors = tile_tensors(files)
    result: dict = {"bundles": {}}
    for bundle in bundles.split(",") if isinstance(bundles, str) else bundles:
        net, sw = shipped_network(bundle)
        w = sw.roi_size[0]
        crops = [t[0, :, :w, :w].numpy() for t in tensors[:4]] + [t[0, :, -w:, -w:].numpy() for t in tensors[:4]]
        runtimes = _runtimes(net, sw, crops, threads, bundle in bf16_bundles)
        seconds: dict[str, list[float]] = {name: [] for name in runtimes}
        diffs: dict[str, tuple[float, int]] = {}
        with torch.no_grad():
            reference = [sw(x, net) for x in tensors[1:]]
            for r in range(rounds):
                for name, (fn, _) in runtimes.items():
                    fn(tensors[0])  # warm-up tile
                    start = time.perf_counter()
                    outputs = [fn(x) for x in tensors[1:]]
                    seconds[name].append((time.perf_counter() - start) / (len(tensors) - 1))
                    if r == 0:
                        diffs[name] = (
                            max(float((o - ref).abs().max()) for o, ref in zip(outputs, reference)),
                            sum(
                                int((_mask(bundle, o) != _mask(bundle, ref)).sum())
                                for o, ref in zip(outputs, reference)
                            ),
                        )
                    print(f"{bundle} round {r + 1}/{rounds} {name}: {seconds[name][-1]:.3f} s/tile", file=sys.stderr)
        result["bundles"][bundle] = {
            name: {
                "seconds_per_tile": float(np.median(seconds[name])),
                "samples": seconds[name],
                "preparation_seconds": round(runtimes[name][1], 2),
                "max_logit_difference": diffs[name][0],
                "mask_pixels_changed": diffs[name][1],
            }
            for name in runtimes
        }
    result.update(
        tiles=[f.name for f in files],
        image_size=list(tensors[0].shape[2:]),
        threads=threads,
        rounds=rounds,
        cpu=platform.processor() or platform.machine(),
        native_bf16=native_bf16_cpu(),
        torch=torch.__version__,
        date=date.today().isoformat(),
    )
    save_report(out, "backends", result, markdown(result))
    return result


def markdown(result: dict) -> str:
    h, w = result["image_size"]
    lines = [
        f"Each bundle's network alone on {h}×{w} tiles under its sliding window: marginal seconds per tile, median of "
        f"{result['rounds']} rounds over {len(result['tiles']) - 1} tiles, {result['threads']} threads, "
        f"{result['cpu']}, hardware bfloat16: {'yes' if result['native_bf16'] else 'no'}, torch {result['torch']}, "
        f"{result['date']} (`python -m bench.network_backends --images IMAGES`). Mask pixels changed: summed over "
        "the tiles, against eager float32 (SSimNet: probability > 0.25; DCGN: arg-max class).",
        "",
    ]
    for bundle, rows in result["bundles"].items():
        eager = rows["eager float32"]["seconds_per_tile"]
        lines += [
            f"**{bundle}**",
            "",
            "| runtime | s / tile | vs eager float32 | one-time preparation (s) | max logit difference | mask pixels changed |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in rows.items():
            lines.append(
                f"| {name} | {row['seconds_per_tile']:.3f} | {row['seconds_per_tile'] / eager:.2f}× | "
                f"{row['preparation_seconds']:.1f} | {row['max_logit_difference']:.1e} | {row['mask_pixels_changed']} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
