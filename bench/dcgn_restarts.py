"""Benchmark: does DCGN's own training objective tell a good training seed from a bad one, without labels?

A Gaussian mixture fitted by EM is fitted from several starts and the fit with the best likelihood is kept
(scikit-learn's ``n_init``): the likelihood is label-free. DCGN's network is trained by the same likelihood (plus the
centralised constraint), and its seeds differ by more than the target's spread (MoNuSeg AJI 0.28–0.34 over five
seeds), so the same rule could pick a seed. This script computes, for each checkpoint, the bundle's training loss
(``scripts.loss.DCGNLoss`` with ``train.json``'s settings) on every whole training tile (the tile through the bundle's
sliding window, the mixture fitted on the tile's own features, no augmentation), and the mean over tiles. Reading the
harness's per-seed scores beside it (``--scores``: ``name=summary.json`` folders of ``bench.harness``, labels used only
there) says whether a lower objective goes with better masks; the objective itself never reads a label.

A second label-free criterion is read beside it (``--preds``: each checkpoint's instance maps of the same tiles): the
mean solidity of the predicted objects, the convexity that the pseudo labels' cluster rule already uses to tell whole
nuclei from lace and merged clumps (``labelfree.transforms.pseudolabel.mean_solidity``). Both criteria were declared
before their correlations were computed.

    python -m bench.dcgn_restarts --images ../shared/data/monuseg/train/images \\
        --ckpts '{"seed3": "RUNS/seed3-.../model.pt", ...}' --out bench/results/dcgn_restarts
"""

from __future__ import annotations

import json
from pathlib import Path

import fire
import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm import tqdm

from labelfree.core.imageio import list_images, load_instance_map, save_text
from labelfree.engines.slides import bundle_parser
from labelfree.transforms.pseudolabel import mean_solidity

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "dcgn"


def _tiles(images: str, parser) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Each tile as the network sees it in training (stain-normalised, min-max) and its mixture features, without the
    random crop and augmentation."""
    from monai.transforms import Compose, EnsureTyped

    from labelfree.transforms.intensity import MinMaxNormalized
    from labelfree.transforms.io import LoadRGBd

    key = parser.get_parsed_content("target_key")
    steps = [LoadRGBd(keys="image")]
    if key != "image":
        steps.append(parser.get_parsed_content("train#features"))
    if parser.get_parsed_content("stain_normalisation"):
        steps.append(parser.get_parsed_content("train#normalise"))
    steps += [EnsureTyped(keys="image", dtype=torch.float32), MinMaxNormalized(keys="image")]
    prep = Compose(steps)
    out = []
    for path in tqdm(list_images(images), desc="tiles", unit="tile"):
        d = prep({"image": str(path)})
        out.append((path.stem, torch.as_tensor(d["image"])[None].float(), torch.as_tensor(d[key])[None].float()))
    return out


def objectives(
    images: str, ckpts: dict[str, str], threads: int = 2, known: dict[str, dict[str, float]] | None = None
) -> dict[str, dict[str, float]]:
    """``{name: {tile: loss}}``: the bundle's training loss of each checkpoint on each whole tile (``known``: losses
    already computed for some names, kept as they are)."""
    known = dict(known or {})
    result = {n: known[n] for n in ckpts if n in known}
    ckpts = {n: c for n, c in ckpts.items() if n not in known}
    if not ckpts:
        return result
    torch.set_num_threads(threads)
    train = bundle_parser(BUNDLE, config_file="train.json")
    infer = bundle_parser(BUNDLE)
    tiles = _tiles(images, train)
    loss_fn = train.get_parsed_content("loss")
    inferer = infer.get_parsed_content("sliding_window_inferer")
    net = train.get_parsed_content("network_def", instantiate=True).eval()
    for name, ckpt in ckpts.items():
        net.load_state_dict(torch.load(ckpt, map_location="cpu"))  # every weight and buffer: one network serves all
        per_tile = {}
        with torch.inference_mode():
            for stem, image, target in tqdm(tiles, desc=name, unit="tile"):
                per_tile[stem] = float(loss_fn(inferer(image, net), target))
        result[name] = per_tile
    return result


def solidity(pred_dir: str) -> float:
    """Mean over tiles of the mean object solidity of the instance maps (``*_inst.tif``) in ``pred_dir``."""
    files = sorted(Path(pred_dir).glob("*_inst.tif"))
    if not files:
        raise FileNotFoundError(f"no *_inst.tif in {pred_dir}")
    return float(np.mean([mean_solidity(load_instance_map(f)) for f in files]))


def _scores(folder: str) -> dict[str, float]:
    """Mean Dice / AJI / PQ of a harness output folder (its ``summary.json``)."""
    metrics = json.loads((Path(folder) / "summary.json").read_text())["metrics"]
    row = next(iter(metrics.values()))  # one method per folder
    return {m: float(row[m]["mean"]) for m in ("dice", "aji", "pq")}


def run(
    images: str,
    ckpts: str | dict,
    out: str,
    scores: str | dict | None = None,
    preds: str | dict | None = None,
    threads: int = 2,
    previous: str | None = None,
) -> str:
    """Write ``restarts.md`` / ``.json``: the objective of each checkpoint (mean over tiles) and the mean solidity of
    its predictions on the same tiles (``preds``: ``{name: folder}``), with the harness scores of ``scores``
    (``{name: {set: folder}}``) beside them and Spearman's rank correlation between criteria and scores. ``previous``:
    a ``restarts.json`` of an earlier run whose per-tile objectives are reused for the checkpoints it has (same
    name and path)."""
    ckpts = json.loads(ckpts) if isinstance(ckpts, str) else dict(ckpts)
    scores = json.loads(scores) if isinstance(scores, str) else dict(scores or {})
    preds = json.loads(preds) if isinstance(preds, str) else dict(preds or {})
    known = {}
    if previous:
        old = json.loads(Path(previous).read_text())
        known = {n: v for n, v in old["per_tile"].items() if old["ckpts"].get(n) == ckpts.get(n)}
    per = objectives(images, ckpts, threads, known)
    means = {n: float(np.mean(list(v.values()))) for n, v in per.items()}
    solid = {n: solidity(f) for n, f in preds.items()}
    sets = sorted({s for v in scores.values() for s in v})
    table = {n: {s: _scores(f) for s, f in scores.get(n, {}).items()} for n in per}
    lines = [
        f"# DCGN: the training objective of each seed on its training tiles (`{images}`, {len(next(iter(per.values())))}"
        " tiles)",
        "",
        "`python -m bench.dcgn_restarts --images IMAGES --ckpts CKPTS --scores SCORES --out OUT`; the objective is the "
        "bundle's training loss on each whole tile (mean over tiles; lower = a better mixture fit), label-free; the "
        "scores are the comparison harness's (labels only to score).",
        "",
        "| checkpoint | objective | mean solidity | " + " | ".join(f"{s} Dice / AJI / PQ" for s in sets) + " |",
        "|---|---|---|" + "---|" * len(sets),
    ]
    for n in sorted(per, key=means.get):
        cells = [
            " / ".join(f"{table[n][s][m]:.3f}" for m in ("dice", "aji", "pq")) if s in table[n] else "–" for s in sets
        ]
        sol = f"{solid[n]:.4f}" if n in solid else "–"
        lines.append(f"| {n} | {means[n]:.4f} | {sol} | " + " | ".join(cells) + " |")
    corr = {}
    for s in sets:
        for crit, values in (("objective", means), ("solidity", solid)):
            names = [n for n in per if s in table[n] and n in values]
            for m in ("dice", "aji"):
                if len(names) >= 3:
                    rho, p = spearmanr([values[n] for n in names], [table[n][s][m] for n in names])
                    corr[f"{crit} ~ {s} {m}"] = {"rho": float(rho), "p": float(p), "n": len(names)}
    if corr:
        lines += [
            "",
            "Spearman's rank correlation of each criterion with the scores (a useful objective correlates negatively, "
            "a useful solidity positively):",
        ]
        lines += [f"- {k}: rho = {v['rho']:+.2f} (p = {v['p']:.2g}, {v['n']} checkpoints)" for k, v in corr.items()]
    report = "\n".join(lines) + "\n"
    out_dir = Path(out)
    save_text(out_dir / "restarts.md", report)
    payload = {
        "objective": means,
        "solidity": solid,
        "per_tile": per,
        "scores": table,
        "spearman": corr,
        "ckpts": ckpts,
    }
    save_text(out_dir / "restarts.json", json.dumps(payload, indent=1) + "\n")
    print(report)
    return str(out_dir / "restarts.md")


if __name__ == "__main__":
    fire.Fire(run)
