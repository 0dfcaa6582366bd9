"""Benchmark: the inference table on a GPU (the speed issue: "measure the same table there, AMP, batch sizes").

Marginal seconds per tile (the first tile is the warm-up), median of ``rounds`` rounds, on ``device``:

* each bundle's network alone under MONAI's ``SlidingWindowInferer`` (its window and overlap), float32 and under
  autocast (float16, what MONAI's ``amp`` uses, and bfloat16), at the bundle's window batch and at larger ones;
* each bundle's ``inference.json`` as shipped (on CUDA: ``amp`` on, ONNX Runtime and CPU bfloat16 off), and SSimNet's
  with a larger window batch;
* how far autocast moves the masks: pixels whose mask changes against float32 (SSimNet: probability > 0.25; DCGN:
  the arg-max class), summed over the tiles.

    python -m bench.gpu_speed --images IMAGES --out OUT     # on a machine with a GPU
"""

from __future__ import annotations

import platform
import sys
import time
from datetime import date
from pathlib import Path

import fire
import numpy as np
import torch
from monai.inferers import SlidingWindowInferer

from bench.report_files import save_report
from bench.speed import _marginal, _tiles, shipped_network, tile_tensors, time_bundle

DTYPES = {"float32": None, "float16 autocast": torch.float16, "bfloat16 autocast": torch.bfloat16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def network_rows(bundle: str, tensors: list[torch.Tensor], device: torch.device, batches: list[int]) -> dict:
    """``{(dtype, batch): seconds per tile}`` and ``{dtype: mask pixels changed against float32}`` of the network."""
    net, sw = shipped_network(bundle, device)
    batches = [sw.sw_batch_size] + [b for b in batches if b != sw.sw_batch_size]
    seconds, changed, reference = {}, {}, None
    for dtype_name, dtype in DTYPES.items():
        for batch in batches:
            inferer = SlidingWindowInferer(roi_size=sw.roi_size, sw_batch_size=batch, overlap=sw.overlap, mode=sw.mode)
            times, masks = [], []
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=bool(dtype)):
                for x in tensors:
                    out = inferer(x.to(device), net).float()
                    _sync(device)
                    times.append(time.perf_counter())
                    if batch == batches[0]:
                        masks.append(out.softmax(1)[0, 1] > 0.25 if bundle == "ssimnet" else out.argmax(1)[0])
            seconds[f"{dtype_name}, window batch {batch}"] = _marginal(times)
            if batch == batches[0]:
                reference = masks if reference is None else reference
                changed[dtype_name] = int(sum(int((m != r).sum()) for m, r in zip(masks, reference)))
            print(
                f"{bundle} {dtype_name} batch {batch}: {seconds[f'{dtype_name}, window batch {batch}']:.4f} s",
                file=sys.stderr,
            )
    return {"seconds_per_tile": seconds, "mask_pixels_changed": changed}


def run(images: str, out: str, tiles: int = 5, rounds: int = 3, batches: str | tuple = "8,32,128") -> dict:
    """Time the GPU rows on the first ``tiles`` (+1 warm-up) images; write ``gpu_speed.{json,md}``."""
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    files = _tiles(images, tiles)
    tensors = tile_tensors(files)
    # fire reads "--batches 8" as an int, "--batches 8,32" as a tuple
    sizes = [int(b) for b in (str(batches).split(",") if isinstance(batches, (str, int)) else batches)]
    folder = Path(images)
    bundle_rows = {
        "SSimNet bundle, default": ("ssimnet", {}),
        "SSimNet bundle, window batch 32": ("ssimnet", {"sliding_window_inferer#sw_batch_size": 32}),
        "SSimNet bundle, `--flip_tta False`": ("ssimnet", {"flip_tta": False}),
        "DCGN bundle, default": ("dcgn", {}),
    }
    samples: dict[str, list[float]] = {}
    networks: dict[str, list[dict]] = {"ssimnet": [], "dcgn": []}
    for r in range(rounds):
        for bundle in networks:
            networks[bundle].append(network_rows(bundle, tensors, device, sizes))
        for name, (bundle, overrides) in bundle_rows.items():
            # a tile folder holds only the timed tiles: time_bundle runs every image of it
            samples.setdefault(name, []).append(time_bundle(bundle, folder, overrides, threads=16)["seconds_per_tile"])
            print(f"round {r + 1}/{rounds} {name}: {samples[name][-1]:.3f} s/tile", file=sys.stderr, flush=True)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "date": date.today().isoformat(),
        "tiles": [f.name for f in files],
        "image_size": list(tensors[0].shape[2:]),
        "rounds": rounds,
        "networks": {
            b: {
                "seconds_per_tile": {
                    k: float(np.median([one["seconds_per_tile"][k] for one in runs]))
                    for k in runs[0]["seconds_per_tile"]
                },
                "mask_pixels_changed": runs[0]["mask_pixels_changed"],
            }
            for b, runs in networks.items()
        },
        "bundles": {k: float(np.median(v)) for k, v in samples.items()},
        "samples": samples,
    }
    save_report(out, "gpu_speed", result, markdown(result))
    return result


def markdown(result: dict) -> str:
    h, w = result["image_size"]
    lines = [
        f"{result['device']}, torch {result['torch']}, {result['date']}: marginal seconds per {h}×{w} tile, median of "
        f"{result['rounds']} rounds over {len(result['tiles']) - 1} tiles (`python -m bench.gpu_speed`).",
        "",
        "| pipeline | s / tile | vs its network alone (float32, its window batch) | mask pixels changed vs float32 |",
        "|---|---|---|---|",
    ]
    for bundle, rows in result["networks"].items():
        sec = rows["seconds_per_tile"]
        ref = next(iter(sec.values()))
        for name, value in sec.items():
            dtype = name.split(",")[0]
            first = name == next(k for k in sec if k.startswith(dtype))
            changed = rows["mask_pixels_changed"].get(dtype, "") if first else ""
            lines.append(f"| {bundle} network alone, {name} | {value:.4f} | {value / ref:.2f}× | {changed} |")
        for name, value in result["bundles"].items():
            if name.lower().startswith(bundle):
                lines.append(f"| {name} | **{value:.4f}** | **{value / ref:.2f}×** | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
