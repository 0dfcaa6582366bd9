"""Benchmark: seconds per DCGN training step at 512², batch 1, on this machine's CPU cores.

The network, loss, optimiser and data loader are built from ``bundles/dcgn/configs/train.json`` itself, so the step
timed is the bundle's: load (cached) → hue/saturation/flip augmentation → min–max → forward → GMM loss → backward →
Adam. The first ``warmup`` steps are not counted; the median and mean of the next ``steps`` are reported.

    python -m bench.dcgn_step_time --images ../shared/data/monuseg/train/images --out bench/results
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import fire
import numpy as np
import torch
from monai.bundle import ConfigParser

from labelfree.core.imageio import save_text

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "dcgn"


def run(images: str, out: str = "bench/results", steps: int = 30, warmup: int = 3, threads: int = 2) -> dict:
    """Time ``steps`` training steps of the DCGN bundle on ``images`` and write ``dcgn_step_time.{json,md}``."""
    sys.path.insert(0, str(BUNDLE))
    torch.set_num_threads(threads)
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser["bundle_root"] = str(BUNDLE)
    parser["dataset_dir"] = images
    parser["device"] = "$torch.device('cpu')"
    parser["amp"] = False
    torch.manual_seed(0)
    net = parser.get_parsed_content("network")
    loss_fn = parser.get_parsed_content("loss")
    opt = parser.get_parsed_content("optimizer")
    loader = parser.get_parsed_content("train#dataloader")
    net.train()
    times: list[float] = []
    batches = iter(loader)
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        image = torch.as_tensor(batch["image"])
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(image), image)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    t = np.array(times)
    result = {
        "image_size": list(image.shape[-2:]),
        "batch_size": int(image.shape[0]),
        "threads": threads,
        "steps": steps,
        "seconds_per_step_median": float(np.median(t)),
        "seconds_per_step_mean": float(t.mean()),
        "seconds_per_step_max": float(t.max()),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "date": date.today().isoformat(),
    }
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_text(out_dir / "dcgn_step_time.json", json.dumps(result, indent=2))
    md = (
        f"DCGN training step, {result['image_size'][0]}×{result['image_size'][1]}, batch {result['batch_size']}, "
        f"{threads} threads, {result['cpu_count']} CPU cores, torch {result['torch']}, {result['date']}: "
        f"median **{result['seconds_per_step_median']:.3f} s**, mean {result['seconds_per_step_mean']:.3f} s, "
        f"max {result['seconds_per_step_max']:.3f} s over {steps} steps (after {warmup} warm-up steps).\n"
    )
    save_text(out_dir / "dcgn_step_time.md", md)
    print(md)
    return result


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
