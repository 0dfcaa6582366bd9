"""Benchmark: what a colour mixture can reach when it is fitted to each tile directly (EM, no network).

DCGN's network is trained to output a Gaussian-mixture posterior, so a per-tile EM fit of the same mixture on the same
features says what the objective can give at best without spatial context. For each feature space of
``labelfree.transforms.mixture_features`` and each K, a full-covariance mixture (scikit-learn, 50,000 pixels, seed 0)
is fitted per tile, the component with the highest mean haematoxylin (``rgb2hed``) is named nuclei (DCGN's label-free
rule), and its mask is split by the project's watershed (``instances_from_map``). Labels are read only to score.

    python -m bench.mixture_em --images ../shared/data/monuseg/train/images \\
        --labels ../shared/data/monuseg/train/labels --out bench/results/mixture_em/monuseg
"""

from __future__ import annotations

import json
from pathlib import Path

import fire
import numpy as np
from skimage.color import rgb2hed
from tqdm import tqdm

from labelfree.core.imageio import find_label, list_images, load_instance_map, load_rgb, save_text
from labelfree.core.metrics import aji, pixel_scores
from labelfree.transforms.instances import instances_from_map
from labelfree.transforms.mixture_features import mixture_features


def nuclei_by_em(rgb: np.ndarray, kind: str, k: int, seed: int = 0, n_fit: int = 50_000) -> np.ndarray:
    """Fit a K-component mixture to the tile's ``kind`` features; the mask of the highest-haematoxylin component."""
    from sklearn.mixture import GaussianMixture

    x = mixture_features(rgb, kind).reshape(-1, rgb.shape[0] * rgb.shape[1]).T.astype(np.float64)
    rng = np.random.default_rng(seed)
    fit = x[rng.choice(len(x), size=min(n_fit, len(x)), replace=False)]
    c = GaussianMixture(k, covariance_type="full", random_state=seed).fit(fit).predict(x)
    hema = rgb2hed(rgb)[..., 0].ravel()
    means = [hema[c == j].mean() if (c == j).any() else -np.inf for j in range(k)]
    return (c == int(np.argmax(means))).reshape(rgb.shape[:2])


def run(
    images: str, labels: str, out: str, kinds: str | tuple = ("rgb", "od", "stains"), ks: str | tuple = (2, 3)
) -> str:
    """Score every (feature kind, K) on every tile; write ``mixture_em.md`` and ``.json`` into ``out``."""
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    ks = [int(ks)] if isinstance(ks, (int, str)) else [int(k) for k in ks]
    rows = []
    for path in tqdm(list_images(images), desc="mixture EM", unit="image"):
        rgb = load_rgb(path)
        gt = load_instance_map(find_label(labels, path))
        for kind in kinds:
            for k in ks:
                mask = nuclei_by_em(rgb, kind, k)
                inst = instances_from_map(mask)
                rows.append(
                    {
                        "image": path.stem,
                        "kind": kind,
                        "k": k,
                        "dice": pixel_scores(gt, inst)["dice"],
                        "aji": aji(gt, inst),
                        "area_ratio": float(mask.sum() / max((gt > 0).sum(), 1)),
                    }
                )
    lines = [
        f"# Per-tile EM mixture fits (no network), `{images}` ({len(rows) // (len(kinds) * len(ks))} tiles)",
        "",
        f"`python -m bench.mixture_em --images {images} --labels {labels} --out {out} --kinds {','.join(kinds)} "
        f"--ks {','.join(map(str, ks))}`; nuclei = the component with the "
        "highest mean haematoxylin (label-free); labels only to score.",
        "",
        "| features | K | Dice | AJI | predicted / true area, mean (max) |",
        "|---|---|---|---|---|",
    ]
    summary = {}
    for kind in kinds:
        for k in ks:
            sel = [r for r in rows if r["kind"] == kind and r["k"] == k]
            s = {m: float(np.mean([r[m] for r in sel])) for m in ("dice", "aji", "area_ratio")}
            s["area_ratio_max"] = float(np.max([r["area_ratio"] for r in sel]))
            summary[f"{kind}_k{k}"] = s
            lines.append(
                f"| {kind} | {k} | {s['dice']:.3f} | {s['aji']:.3f} | {s['area_ratio']:.2f} ({s['area_ratio_max']:.2f}) |"
            )
    report = "\n".join(lines) + "\n"
    out_dir = Path(out)
    save_text(out_dir / "mixture_em.md", report)
    save_text(out_dir / "mixture_em.json", json.dumps({"summary": summary, "per_image": rows}, indent=1) + "\n")
    print(report)
    return str(out_dir / "mixture_em.md")


if __name__ == "__main__":
    fire.Fire(run)
