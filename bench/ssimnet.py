"""Benchmark: the SSimNet bundle trained label-free on a folder of tiles, several seeds, scored against labels.

For every seed: ``train.json`` on ``--images`` (labels never read), then ``inference.json`` + ``evaluate.json`` on the
same tiles with test-time fine-tuning, each through ``python -m monai.bundle run`` and timed as wall time. A seed
whose run folder already holds its results is not recomputed (the benchmark is resumable). The table also carries
the raw pseudo labels and the Otsu + watershed baseline from ``bench/pseudo_labels.py`` when its results exist.

    python -m bench.ssimnet --images ../shared/data/monuseg/train/images \
        --labels ../shared/data/monuseg/train/labels --seeds 0,1,2 --out bench/results
"""

from __future__ import annotations

import json
import os
import platform
from datetime import date
from pathlib import Path

import fire
import numpy as np

from bench.harness.methods import run_monai_bundle
from labelfree.core.imageio import save_text

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "ssimnet" / "configs"
METRICS = ("dice", "aji", "aji_plus", "pq", "precision", "recall")


def run_seed(images: str, labels: str, seed: int, runs: Path, finetune: bool = True) -> dict:
    """Train and evaluate one seed (or read its finished results)."""
    d = runs / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    result_file = d / f"result{'' if finetune else '_noft'}.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    model = d / "model.pt"
    timing = d / "train_seconds.txt"
    if not (model.is_file() and timing.is_file()):
        secs = run_monai_bundle(
            [
                "--config_file",
                str(CONFIGS / "train.json"),
                "--bundle_root",
                str(CONFIGS.parent),
                "--dataset_dir",
                images,
                "--seed",
                str(seed),
                "--output_dir",
                str(d / "train"),
                "--model_path",
                str(model),
            ],
            d / "train.log",
        )
        timing.write_text(f"{secs:.1f}\n")
    train_seconds = float(timing.read_text())
    out = d / ("eval" if finetune else "eval_noft")
    configs = "[" + ",".join(repr(str(CONFIGS / f"{n}.json")) for n in ("inference", "evaluate")) + "]"
    infer_seconds = run_monai_bundle(
        [
            "--config_file",
            configs,
            "--bundle_root",
            str(CONFIGS.parent),
            "--dataset_dir",
            images,
            "--labels_dir",
            labels,
            "--seed",
            str(seed),
            "--output_dir",
            str(out),
            "--ckpt_path",
            str(model),
            "--finetune",
            str(finetune),
        ],
        d / f"evaluate{'' if finetune else '_noft'}.log",
    )
    report = json.loads((out / "metrics.json").read_text())
    result = {
        "seed": seed,
        "finetune": finetune,
        "train_seconds": train_seconds,
        "inference_seconds_total": infer_seconds,
        "inference_seconds_per_image": infer_seconds / report["n_images"],
        **{m: report["mean"][m] for m in METRICS},
        "per_image": report["per_image"],
    }
    save_text(result_file, json.dumps(result, indent=2))
    return result


def _row(name: str, rs: list[dict], extra: str = "") -> str:
    cells = []
    for m in ("dice", "aji", "aji_plus", "pq", "precision", "recall"):
        v = np.array([r[m] for r in rs])
        cells.append(f"{v.mean():.3f} ± {v.std():.3f} ({v.max():.3f})" if len(v) > 1 else f"{v[0]:.3f}")
    return f"| {name} | " + " | ".join(cells) + f" | {extra} |"


def run(
    images: str,
    labels: str,
    seeds: str | int | tuple = "0,1,2",
    out: str = "bench/results",
    runs: str = "bench/runs/ssimnet",
    no_finetune_seed: int | None = 0,
) -> dict:
    """Benchmark the SSimNet bundle; ``no_finetune_seed`` also scores that seed without test-time fine-tuning."""
    seed_list = [int(s) for s in (seeds.split(",") if isinstance(seeds, str) else np.atleast_1d(seeds))]
    runs_dir = Path(runs)
    results = [run_seed(images, labels, s, runs_dir) for s in seed_list]
    noft = (
        [run_seed(images, labels, no_finetune_seed, runs_dir, finetune=False)] if no_finetune_seed is not None else []
    )
    summary = {
        m: {"mean": float(np.mean([r[m] for r in results])), "std": float(np.std([r[m] for r in results]))}
        for m in (*METRICS, "train_seconds", "inference_seconds_per_image")
    }
    outdir = Path(out)
    doc = {
        "command": f"python -m bench.ssimnet --images {images} --labels {labels} --seeds {','.join(map(str, seed_list))} --out {out}",
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
        "seeds": seed_list,
        "summary": summary,
        "runs": [{k: v for k, v in r.items() if k != "per_image"} for r in results + noft],
    }
    save_text(outdir / "ssimnet.json", json.dumps(doc, indent=2))
    lines = [
        f"# SSimNet bundle benchmark ({len(seed_list)} seeds, {doc['date']})",
        "",
        f"`{doc['command']}`  ",
        f"Machine: {doc['machine']}. Mean ± std over seeds (best seed); each seed's value is the mean over images.",
        "",
        "| method | Dice | AJI | AJI+ | PQ | precision | recall | time |",
        "|---|---|---|---|---|---|---|---|",
        _row(
            "SSimNet bundle (fine-tuned)",
            results,
            f"train {summary['train_seconds']['mean'] / 60:.1f} min, "
            f"infer {summary['inference_seconds_per_image']['mean']:.1f} s/img",
        ),
    ]
    if noft:
        lines.append(
            _row(
                f"SSimNet bundle, no fine-tuning (seed {no_finetune_seed})",
                noft,
                f"infer {noft[0]['inference_seconds_per_image']:.1f} s/img",
            )
        )
    pl = outdir / "pseudo_labels.json"
    if pl.is_file():
        s = json.loads(pl.read_text())["summary"]
        for name, label in (("pseudo_labels", "raw pseudo labels"), ("otsu_ws", "Otsu haematoxylin + watershed")):
            lines.append(_row(label, [s[name]], f"{s[name]['median_seconds']:.2f} s/img"))
    text = "\n".join(lines) + "\n"
    save_text(outdir / "ssimnet.md", text)
    print(text)
    return summary


if __name__ == "__main__":
    fire.Fire(run)
