"""Benchmark: how many EM steps DCGN's inference takes from the network's softmax.

DCGN 0.4.0 reads the softmax as responsibilities and gives every pixel the posterior of the mixture they define on the
tile (one EM step, ``labelfree.core.gaussian_mixture.mixture_posterior``). Further steps move the components from
the network's answer towards the tile's own colour fit (the per-tile EM bound of ``bench.mixture_em``). This runs the
bundle's own preprocessing, network and inferer once per tile, then names the classes and splits the nuclei exactly as
``NameClassesd`` does after 0 (the softmax itself), 1 and more steps. Labels are read only to score.

    python -m bench.mixture_steps --images ../shared/data/monuseg/train/images \\
        --labels ../shared/data/monuseg/train/labels --out bench/results/mixture_steps/monuseg
"""

from __future__ import annotations

import json
from pathlib import Path

import fire
import numpy as np
import torch
from tqdm import tqdm

from labelfree.core.gaussian_mixture import mixture_posterior
from labelfree.core.imageio import find_label, list_images, load_instance_map, save_text
from labelfree.core.metrics import aji, panoptic_quality, pixel_scores
from labelfree.engines.slides import bundle_parser

REPO = Path(__file__).resolve().parents[1]


def run(
    images: str,
    labels: str,
    out: str,
    steps: str | int | tuple = (0, 1, 3, 20),
    ckpt_path: str | None = None,
    threads: int = 2,
) -> dict:
    """Score DCGN's nuclei after each number of EM ``steps`` on every tile; write ``mixture_steps.{md,json}``."""
    steps = sorted({int(s) for s in (str(steps).split(",") if isinstance(steps, (str, int)) else steps)})
    torch.set_num_threads(threads)
    parser = bundle_parser(REPO / "bundles" / "dcgn", {"dataset_dir": str(images)})
    preprocessing = parser.get_parsed_content("preprocessing")
    network, inferer = parser.get_parsed_content("network"), parser.get_parsed_content("inferer")
    ckpt = Path(ckpt_path) if ckpt_path else REPO / "bundles" / "dcgn" / "models" / "model.pt"
    network.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    network.eval()
    from scripts.classes import NameClassesd, tile_mixture_posterior  # the bundle's, once bundle_parser has run

    naming = NameClassesd(
        image_key="tile",
        instances_from=parser["instances_from"],
        min_size=parser["min_size"],
        h=parser["marker_depth"],
        resplit_irregular=parser["resplit_irregular"],
    )
    rows = []
    for path in tqdm(list_images(images), desc="mixture steps", unit="image"):
        gt = load_instance_map(find_label(labels, path))
        item = preprocessing({"image": str(path)})
        with torch.inference_mode():
            prob = inferer(torch.as_tensor(item["image"])[None].float(), network)[0].softmax(0)
        k, h, w = prob.shape
        x = torch.as_tensor(item["features"]).double().reshape(-1, h * w)
        pred, gamma = prob, None
        for step in range(max(steps) + 1):
            if step == 1:  # what NameClassesd(class_posterior="mixture") does in the bundle: the same float32 posterior
                pred = torch.as_tensor(tile_mixture_posterior(prob.numpy(), item["features"]))
                gamma = pred.double().reshape(k, -1)
            elif step > 1:  # further steps stay in float64
                gamma = mixture_posterior(x, gamma)
                pred = gamma.reshape(k, h, w).float()
            if step in steps:  # instances only for the steps reported
                inst = naming({"pred": pred, "tile": item["tile"]})["inst"][0]
                rows.append(
                    {
                        "image": path.stem,
                        "steps": step,
                        "dice": pixel_scores(gt, inst)["dice"],
                        "aji": aji(gt, inst),
                        "pq": panoptic_quality(gt, inst)["pq"],
                        "area_ratio": float((inst > 0).sum() / max((gt > 0).sum(), 1)),
                    }
                )
    summary = {
        s: {m: float(np.mean([r[m] for r in rows if r["steps"] == s])) for m in ("dice", "aji", "pq", "area_ratio")}
        for s in steps
    }
    lines = [
        f"# DCGN: EM steps from the network's softmax, `{images}` ({len(rows) // len(steps)} tiles)",
        "",
        f"`python -m bench.mixture_steps --images {images} --labels {labels} --out {out} "
        f"--steps {','.join(map(str, steps))}`; checkpoint `{ckpt.name}`; 0 steps = the softmax itself, 1 = the "
        "bundle's default (0.4.0); labels only to score.",
        "",
        "| EM steps | Dice | AJI | PQ | predicted / true area |",
        "|---|---|---|---|---|",
    ]
    for s, v in summary.items():
        lines.append(f"| {s} | {v['dice']:.3f} | {v['aji']:.3f} | {v['pq']:.3f} | {v['area_ratio']:.2f} |")
    report = "\n".join(lines) + "\n"
    save_text(Path(out) / "mixture_steps.md", report)
    save_text(Path(out) / "mixture_steps.json", json.dumps({"summary": summary, "per_image": rows}, indent=1) + "\n")
    print(report)
    return summary


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
