"""Benchmark: seconds per DCGN training step on this machine's CPU cores, default recipe and paper recipe in one run.

The network, loss, optimiser, data loader and batch preparation are built from ``bundles/dcgn/configs/train.json``
itself (with ``configs/paper.json`` laid over it for the paper's row), so the step timed is the bundle's: load
(cached, with the stain features of the default recipe) → crop or resize → hue/saturation/flip augmentation → min–max
→ forward → GMM loss → backward → Adam. The default step sees four 256² crops of one tile, the paper's one tile
squashed to 512²: the same number of pixels. The first ``warmup`` steps are not counted; the median and mean of the
next ``steps`` are reported. Other rows are train.json with ``--key value`` overrides, named by ``recipes`` and given
in ``overrides``, so an arm's step is timed beside the default's in the same run (speeds compared as ratios):

    python -m bench.dcgn_step_time --images ../shared/data/monuseg/train/images --out bench/results
    python -m bench.dcgn_step_time --images IMAGES --out OUT --recipes "['default','context512']" \
        --overrides '{"context512": {"patch_size": 512, "patches_per_tile": 1}}'
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


def time_steps(images: str, recipe: str, steps: int, warmup: int, threads: int, overrides: dict | None = None) -> dict:
    """Time ``steps`` training steps of one recipe (``"default"``, ``"paper"`` or a name for ``overrides``).

    Args:
        images: folder of training tiles.
        recipe: the row's name; ``"paper"`` lays ``configs/paper.json`` over train.json.
        steps: steps timed after ``warmup`` untimed ones.
        warmup: steps run first and not timed.
        threads: torch threads.
        overrides: train.json keys set for this row (``{"patch_size": 512}``), as ``--key value`` would.

    Returns:
        the row: recipe, input shape per step, median / mean / max seconds per step and the machine.
    """
    if str(BUNDLE) not in sys.path:
        sys.path.insert(0, str(BUNDLE))
    torch.set_num_threads(threads)
    parser = ConfigParser()
    files = [str(BUNDLE / "configs" / "train.json")]
    if recipe == "paper":
        files.append(str(BUNDLE / "configs" / "paper.json"))
    parser.read_config(files)
    parser["bundle_root"] = str(BUNDLE)
    parser["dataset_dir"] = images
    parser["device"] = "$torch.device('cpu')"
    parser["amp"] = False
    for key, value in (overrides or {}).items():
        parser[key] = value
    torch.manual_seed(0)
    net = parser.get_parsed_content("network")
    loss_fn = parser.get_parsed_content("loss")
    opt = parser.get_parsed_content("optimizer")
    loader = parser.get_parsed_content("train#dataloader")
    prepare = parser.get_parsed_content("train#prepare_batch")
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
        image, target = prepare(batch, torch.device("cpu"))
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(image), target)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    t = np.array(times)
    return {
        "recipe": recipe,
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


def run(
    images: str,
    out: str = "bench/results",
    steps: int = 30,
    warmup: int = 3,
    threads: int = 2,
    recipes: tuple[str, ...] | list[str] = ("default", "paper"),
    overrides: dict | None = None,
) -> list[dict]:
    """Time each recipe on ``images`` one after the other and write ``dcgn_step_time.{json,md}`` under ``out``."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(recipes))
    if unknown:  # an override under a misspelt name would otherwise time the default silently
        raise ValueError(f"overrides name recipes not in --recipes: {unknown}")
    results = [time_steps(images, recipe, steps, warmup, threads, overrides.get(recipe)) for recipe in recipes]
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_text(out_dir / "dcgn_step_time.json", json.dumps(results, indent=2))
    r0 = results[0]
    lines = [
        f"DCGN training step, {threads} threads, {r0['cpu_count']} CPU cores, torch {r0['torch']}, {r0['date']}, "
        f"{steps} steps after {warmup} warm-up steps (`python -m bench.dcgn_step_time --images IMAGES`):",
        "",
        "| recipe | input per step | median s | mean s | max s |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['recipe']} | {r['batch_size']} × {r['image_size'][0]}×{r['image_size'][1]} | "
            f"**{r['seconds_per_step_median']:.3f}** | {r['seconds_per_step_mean']:.3f} | {r['seconds_per_step_max']:.3f} |"
        )
    md = "\n".join(lines) + "\n"
    save_text(out_dir / "dcgn_step_time.md", md)
    print(md)
    return results


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
