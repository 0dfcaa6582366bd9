"""Benchmark: a bundle's inference on the mean of several checkpoints' class posteriors (a seed ensemble).

Every lever that moves the masks' width trades MoNuSeg (tighter) against CPM-15 (wider); averaging independently
trained checkpoints does not move the width on purpose, it lowers the spread between seeds. For each tile, every
checkpoint runs the bundle's own preprocessing and inferer (:class:`labelfree.engines.slides.BundleTileSegmenter`);
the softmaxes are averaged and the bundle's own post-processing runs on the average. With one checkpoint this is the
bundle's default inference, pixel for pixel.

* ``dcgn``: each checkpoint's softmax is first put in named-class order by the bundle's label-free rule (classes
  sorted by the mean haematoxylin of their argmax pixels, ``scripts.classes.haematoxylin_order``), since two DCGN
  checkpoints may hold their classes in different orders; the mixture posterior, naming, instances and drop rules
  then run on the average.
* ``ssimnet``: the two channels (background, nucleus) have fixed meanings, so the softmaxes are averaged as they are.

Records: ``bench/results/dcgn_seed_ensemble/`` (rule written before the runs) and ``bench/results/v6/seed_ensemble/``
(SSimNet, measured after an exploratory probe). Labels are read only to score. Writes, per arm,
``<out>/<arm>/seed0/results.csv`` and ``summary.json`` in the comparison harness's layout, so that
``python -m bench.arm_table`` tabulates them beside harness runs; ``<out>/timing.json`` has the seconds per tile.

    python -m bench.seed_ensemble --bundle dcgn --images ../shared/data/monuseg/train/images \\
        --labels ../shared/data/monuseg/train/labels --ckpts CKPT0,CKPT1,CKPT2 --out bench/results/dcgn_seed_ensemble/monuseg
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
#: bundles whose posteriors this can average
BUNDLE_NAMES = ("dcgn", "ssimnet")


def named_softmax(pred: torch.Tensor, rgb: np.ndarray) -> torch.Tensor:
    """``(K, H, W)`` softmax of the logits ``pred``, its classes in the bundle's named order (lowest mean haematoxylin
    of their argmax pixels first), so that checkpoints whose raw classes come in different orders can be averaged."""
    from labelfree.engines.slides import use_bundle_scripts

    use_bundle_scripts(BUNDLES / "dcgn")
    from scripts.classes import haematoxylin_order

    prob = torch.softmax(pred.float(), dim=0)
    order = haematoxylin_order(prob.argmax(0).numpy(), rgb, prob.shape[0])
    return prob[torch.as_tensor(order)]


def posterior(pred: torch.Tensor, rgb: np.ndarray, bundle: str) -> torch.Tensor:
    """``(C, H, W)`` class posterior of one checkpoint's logits ``pred`` in a fixed class order, so that several
    checkpoints of ``bundle`` can be averaged: DCGN's named (:func:`named_softmax`), SSimNet's softmax as it is."""
    if bundle == "dcgn":
        return named_softmax(pred, rgb)
    if pred.shape[0] != 2:
        raise ValueError(f"an SSimNet checkpoint with {pred.shape[0]} outputs: only background / nucleus ones average")
    return torch.softmax(pred.float(), dim=0)


def ensemble_instances(segmenters: Sequence, rgb: np.ndarray, name: str, bundle: str = "dcgn") -> np.ndarray:
    """``(H, W)`` int32 instances of one tile from the mean of ``segmenters``' posteriors (:func:`posterior`),
    finished by the first one's post-processing."""
    items = [s.network_pass(rgb, name) for s in segmenters]
    if len(items) == 1:
        return segmenters[0].postprocess(items[0])
    mean = torch.stack([posterior(d["pred"], rgb, bundle) for d in items]).mean(0)
    item = items[0]
    item["pred"] = torch.log(mean.clamp_min(1e-12))  # the bundle's softmax activation gives the mean back
    return segmenters[0].postprocess(item)


def _write_arm(folder: Path, rows: list[dict]) -> None:
    from bench.harness.results_csv import write_results_csv
    from labelfree.core.imageio import save_text

    write_results_csv(rows, folder / "results.csv")
    save_text(folder / "summary.json", json.dumps({"degeneration": {}}) + "\n")


def run(
    images: str,
    labels: str,
    ckpts: str | Sequence[str],
    out: str,
    bundle: str = "dcgn",
    num_threads: int = 2,
    member_overrides: Sequence[dict] | None = None,
) -> None:
    """Score each checkpoint alone (arms ``single<i>``) and their ensemble (arm ``ensemble``) on ``images``; the means
    are printed and written to ``<out>/means.json``.

    Args:
        images: folder of tiles.
        labels: folder of instance labels named like the tiles, read only to score.
        ckpts: comma-separated checkpoint paths (bare state dicts, as ``models/model.pt``); empty entries are skipped
            and nothing at all names the bundle's shipped checkpoint (:func:`bench.variant_stats.checkpoint_list`), so
            the shipped one among others is named by its path.
        out: output folder.
        bundle: ``dcgn`` or ``ssimnet``.
        num_threads: torch CPU threads.
        member_overrides: one dict of inference-config overrides per checkpoint (default none), so that one
            checkpoint named twice can be averaged over two ways of seeing the tile, e.g. ``[{}, {"stain_normalisation":
            False}]`` for DCGN's normalised and raw colours.
    """
    from tqdm import tqdm

    from bench.variant_stats import checkpoint_list
    from labelfree.core.imageio import find_label, list_images, load_instance_map, load_rgb, save_text
    from labelfree.core.metrics import instance_scores
    from labelfree.engines.slides import BundleTileSegmenter

    if bundle not in BUNDLE_NAMES:
        raise ValueError(f"bundle must be one of {', '.join(BUNDLE_NAMES)}, not {bundle!r}")
    torch.set_num_threads(num_threads)
    root = BUNDLES / bundle
    paths = [str(Path(c or root / "models" / "model.pt").resolve()) for c in checkpoint_list(ckpts)]
    extra = list(member_overrides) if member_overrides else [{} for _ in paths]
    if len(extra) != len(paths):
        raise ValueError(f"{len(extra)} member_overrides for {len(paths)} checkpoints: give one dict per checkpoint")
    segmenters = [BundleTileSegmenter(root, overrides={"ckpt_path": c, **o}) for c, o in zip(paths, extra)]
    # one float32 network pass, as issue 15 counts a bundle's cost (no ONNX Runtime, no bfloat16)
    float32 = BundleTileSegmenter(root, overrides={"ckpt_path": paths[0], "cpu_onnxruntime": False})
    arms = {f"single{i}": [s] for i, s in enumerate(segmenters)} | {"ensemble": segmenters}
    rows = {arm: [] for arm in arms}
    seconds = {arm: 0.0 for arm in arms} | {"float32_network": 0.0}
    tiles = list_images(images)
    for path in tqdm(tiles, desc="tiles", unit="tile"):
        rgb = load_rgb(path)
        gt = load_instance_map(find_label(labels, path))
        for arm, members in arms.items():
            t0 = time.perf_counter()
            inst = ensemble_instances(members, rgb, path.name, bundle)
            dt = time.perf_counter() - t0
            seconds[arm] += dt
            rows[arm].append({"method": arm, "seed": 0, "image": path.stem, "seconds": dt, **instance_scores(gt, inst)})
        t0 = time.perf_counter()
        float32.network_pass(rgb, path.name)
        seconds["float32_network"] += time.perf_counter() - t0
    out_dir = Path(out)
    means = {}
    for arm, arm_rows in rows.items():
        _write_arm(out_dir / arm / "seed0", arm_rows)
        means[arm] = {m: float(np.mean([r[m] for r in arm_rows])) for m in ("dice", "aji", "pq", "precision", "recall")}
    per_tile = {k: v / len(tiles) for k, v in seconds.items()}
    timing = {
        "checkpoints": paths,
        "member_overrides": extra,
        "seconds_per_tile": per_tile,
        "ensemble_over_float32_network": per_tile["ensemble"] / per_tile["float32_network"],
        "single0_over_float32_network": per_tile["single0"] / per_tile["float32_network"],
    }
    save_text(out_dir / "timing.json", json.dumps(timing, indent=2) + "\n")
    save_text(out_dir / "means.json", json.dumps(means, indent=2) + "\n")
    for arm, m in means.items():
        print(f"{arm}: " + " / ".join(f"{k} {v:.3f}" for k, v in m.items()))
    print(
        f"seconds per tile: ensemble {per_tile['ensemble']:.2f}, single {per_tile['single0']:.2f}, one float32 network"
        f" pass {per_tile['float32_network']:.2f} (ensemble {timing['ensemble_over_float32_network']:.2f}x)"
    )


if __name__ == "__main__":
    import fire

    fire.Fire(run)
