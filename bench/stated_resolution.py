"""Tiles of mixed magnification, segmented with and without their stated resolution (``input_mpp``).

A data set's own metadata (CPM-15's ``per_image.csv`` column ``magnification``: 20x or 40x, from the organisers'
README) says at what scale each tile was scanned. This is what a lab knows about its own images, not a label. The
tiles are grouped by magnification, each group is run through the comparison harness twice: told nothing (the
network assumes its training scale, 0.25 µm per pixel at 40×) and told ``input_mpp = 10 / magnification`` µm per pixel
(``labelfree.transforms.scale``), and the per-tile scores are merged into one table per group and for the whole set.
Labels are read only to score.

    python -m bench.stated_resolution --images ../shared/data/cpm15/train/images \
        --labels ../shared/data/cpm15/train/labels --per_image ../shared/data/cpm15/per_image.csv \
        --out bench/results/v3/stated_resolution/cpm15
"""

from __future__ import annotations

import json
from pathlib import Path

import fire

from bench.by_magnification import METRICS, group_means, tile_groups, tile_magnifications, um_per_pixel
from bench.harness.compare import compare
from bench.harness.results_csv import read_results_csv
from labelfree.core.imageio import find_label, list_images, save_text


def _group_folder(root: Path, images: list[Path], labels: Path) -> tuple[Path, Path]:
    """A folder of links to one group's tiles and labels (the harness takes folders)."""
    img_dir, lab_dir = root / "images", root / "labels"
    for d in (img_dir, lab_dir):
        d.mkdir(parents=True, exist_ok=True)
    for p in images:
        lab = find_label(labels, p.name)
        for src, dst in ((p, img_dir / p.name), (lab, lab_dir / lab.name)):
            if not dst.exists():
                dst.symlink_to(Path(src).resolve())
    return img_dir, lab_dir


def run(
    images: str,
    labels: str,
    per_image: str,
    out: str = "bench/results/v3/stated_resolution",
    method: str = "ssimnet_shipped",
    runs: str | None = None,
    options: str | dict | None = None,
) -> None:
    """Run ``method`` on every magnification group, told and not told its resolution; print and write the table.

    Args:
        images: folder of tiles.
        labels: folder of instance maps named like the tiles; read only to score.
        per_image: CSV with ``name`` and ``magnification`` (e.g. ``20x``) for every tile.
        out: output folder (one harness report per group and arm, and the merged table).
        method: a comparison-harness method.
        runs: where the harness keeps its runs (default ``out/runs``).
        options: the method's own overrides for both arms, JSON or a dict (e.g. ``{"ckpt_path": "CKPT"}`` to score
            another checkpoint); the told arm adds ``input_mpp`` to them.
    """
    base = json.loads(options) if isinstance(options, str) else dict(options or {})
    tiles = list_images(images)
    mags = tile_magnifications(per_image, tiles)
    out_dir = Path(out)
    runs_dir = Path(runs) if runs else out_dir / "runs"
    scores: dict[str, dict[str, dict[str, float]]] = {"told": {}, "untold": {}}
    for mag in sorted(set(mags[p.stem] for p in tiles)):
        group = [p for p in tiles if mags[p.stem] == mag]
        img_dir, lab_dir = _group_folder(runs_dir / "groups" / f"{mag:g}x", group, Path(labels))
        for told in ("untold", "told"):
            # runs are kept by method and options, not by tiles: one runs folder per group
            told_mpp = {"input_mpp": um_per_pixel(mag)} if told == "told" else {}
            arm = {method: {**base, **told_mpp}} if base or told_mpp else {}
            sub = out_dir / f"{mag:g}x_{told}"
            compare(
                str(img_dir),
                str(lab_dir),
                methods=method,
                seeds=1,
                out=str(sub),
                options=arm,
                runs=str(runs_dir / f"{mag:g}x"),
            )
            scores[told].update(read_results_csv(sub / "results.csv", METRICS).get(method, {}))
    groups = tile_groups(scores["told"], mags)
    table = {told: group_means(scores[told], groups) for told in ("untold", "told")}
    lines = [
        f"# {method}: tiles told their resolution or not",
        "",
        f"`python -m bench.stated_resolution --images {images} --labels {labels} --per_image {per_image} --out {out}"
        + (f" --options '{json.dumps(base)}'" if base else "")
        + "`",
        "",
        "Mean per tile, Dice / AJI / PQ; told = `input_mpp` = 10 / magnification µm per pixel.",
        "",
        "| input_mpp | " + " | ".join(f"{g} ({len(s)} tiles)" for g, s in groups.items()) + " |",
        "|---|" + "---|" * len(groups),
    ]
    for told, name in (("untold", "not given (default)"), ("told", "stated")):
        cells = [" / ".join(f"{table[told][g][k]:.3f}" for k in METRICS) for g in groups]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    report = "\n".join(lines) + "\n"
    print(report)
    save_text(out_dir / "stated_resolution.md", report)
    save_text(out_dir / "stated_resolution.json", json.dumps({"table": table, "per_tile": scores}, indent=2) + "\n")


if __name__ == "__main__":
    fire.Fire(run)
