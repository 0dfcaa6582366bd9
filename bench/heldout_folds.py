"""Benchmark: a tile scored by the model that self-trained on its image and by one that did not (issue 17's held-out aim).

SSimNet's rounds self-train on the unlabelled tiles they then segment, and the bundle is scored on those same tiles;
issue 17 measures it again on tiles it never saw. Two models trained the same way on two disjoint halves of a folder
(``configs/recipe.json`` on each half, ``bench/results/v6/heldout_folds/plan.md``) give every tile one score as *seen*
(the model of its own half) and one as *unseen* (the other half's), both from models that saw as many tiles. This
reads the comparison harness's per-tile ``results.csv`` of each model on the whole folder and prints the paired table
(labels were read by the harness only to score).

    python -m bench.heldout_folds pairs --folds A=DIR_A,B=DIR_B --results A=RUN_A/results.csv,B=RUN_B/results.csv \\
        --out bench/results/v6/heldout_folds/monuseg

``halves`` prints any models' mean scores on each fold's tiles side by side (e.g. a fold model against the checkpoint
trained on every tile):

    python -m bench.heldout_folds halves --folds A=DIR_A,B=DIR_B --results "NAME=CSV,NAME=CSV,..." --out OUT
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import fire
import numpy as np

from bench.harness.results_csv import read_one_method
from bench.report_files import save_report
from bench.signed_rank import signed_rank_p
from labelfree.core.imageio import list_images

METRICS = ("dice", "aji", "pq", "precision", "recall")


def _pairs(spec: str | tuple, n: int | None = 2) -> dict[str, str]:
    """``"A=x,B=y"`` (or fire's tuple of such items) → ``{"A": "x", "B": "y"}``; ``n`` items required (``None``: any)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = dict(item.split("=", 1) for item in items if item)
    if n is not None and len(out) != n:
        raise ValueError(f"{n} folds are needed, got {sorted(out)}")
    return out


def _spec(pairs: dict[str, str]) -> str:
    """``{"A": "x", "B": "y"}`` → ``"A=x,B=y"``, as the command line takes it."""
    return ",".join(f"{k}={v}" for k, v in pairs.items())


def _members(fold_dirs: dict[str, str]) -> dict[str, str]:
    """Tile stem → the fold whose training images hold it."""
    return {p.stem: name for name, d in fold_dirs.items() for p in list_images(d)}


def _scores(path: str | Path) -> dict[str, dict[str, float]]:
    """Per-tile metrics of one harness ``results.csv`` (one method, one seed)."""
    return read_one_method(path, METRICS)


def run(folds: str | tuple, results: str | tuple, out: str) -> dict:
    """Pair every tile's seen and unseen scores; write ``heldout_folds.{json,md}`` under ``out``.

    Args:
        folds: ``NAME=DIR,NAME=DIR``: each fold's training images (file stems name the tiles).
        results: ``NAME=CSV,NAME=CSV``: the harness's per-tile results of the model trained on that fold, over every
            tile of both folds.
        out: output folder.
    """
    fold_dirs, csvs = _pairs(folds), _pairs(results)
    if set(fold_dirs) != set(csvs):
        raise ValueError(f"folds {sorted(fold_dirs)} and results {sorted(csvs)} name different models")
    member = _members(fold_dirs)
    scores = {name: _scores(path) for name, path in csvs.items()}
    rows = []
    for tile, own in sorted(member.items()):
        other = next(n for n in fold_dirs if n != own)
        if tile not in scores[own] or tile not in scores[other]:
            raise ValueError(f"{tile}: missing from a results file")
        rows.append({"image": tile, "fold": own, "seen": scores[own][tile], "unseen": scores[other][tile]})
    summary = {}
    for m in METRICS:
        seen = np.array([r["seen"][m] for r in rows])
        unseen = np.array([r["unseen"][m] for r in rows])
        summary[m] = {
            "seen": float(seen.mean()),
            "unseen": float(unseen.mean()),
            "higher_unseen": int((unseen > seen).sum()),
            "p": signed_rank_p(unseen, seen),
        }
    result = {"rows": rows, "summary": summary, "folds": fold_dirs, "results": csvs, "date": date.today().isoformat()}
    save_report(out, "heldout_folds", result, markdown(summary, len(rows), fold_dirs, csvs, out))
    return summary


def halves(folds: str | tuple, results: str | tuple, out: str) -> dict:
    """Every model's mean scores on each fold's tiles; write ``halves.{json,md}`` under ``out``.

    Args:
        folds: ``NAME=DIR,NAME=DIR``: each fold's training images.
        results: ``MODEL=CSV,...``: harness per-tile results over every tile of both folds, one per model.
        out: output folder.
    """
    fold_dirs, csvs = _pairs(folds), _pairs(results, None)
    member = _members(fold_dirs)
    table = {}
    for model, path in csvs.items():
        scores = _scores(path)
        missing = set(member) - set(scores)
        if missing:
            raise ValueError(f"{model}: {len(missing)} tile(s) missing from {path}")
        table[model] = {
            fold: {m: float(np.mean([scores[t][m] for t, f in member.items() if f == fold])) for m in METRICS}
            for fold in fold_dirs
        }
    lines = [
        "# Mean scores on each fold's tiles",
        "",
        f"`python -m bench.heldout_folds halves --folds {_spec(fold_dirs)} --results {_spec(csvs)} --out {out}`",
        "",
        "| model | " + " | ".join(f"fold {f}'s tiles: dice / aji / pq / precision / recall" for f in fold_dirs) + " |",
        "|---|" + "---|" * len(fold_dirs),
    ]
    for model, by_fold in table.items():
        cells = [" / ".join(f"{by_fold[f][m]:.3f}" for m in METRICS) for f in fold_dirs]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    result = {"table": table, "folds": fold_dirs, "results": csvs, "date": date.today().isoformat()}
    save_report(out, "halves", result, "\n".join(lines) + "\n")
    return table


def markdown(summary: dict, n: int, folds: dict, csvs: dict, out: str) -> str:
    lines = [
        f"# Seen against unseen: every tile scored by the model that trained on its image and by the other ({n} tiles)",
        "",
        f"`python -m bench.heldout_folds pairs --folds {_spec(folds)} --results {_spec(csvs)} --out {out}`",
        "",
        "| metric | seen (mean) | unseen (mean) | unseen − seen | tiles higher unseen | Wilcoxon p |",
        "|---|---|---|---|---|---|",
    ]
    for m, s in summary.items():
        d = s["unseen"] - s["seen"]
        lines.append(
            f"| {m} | {s['seen']:.3f} | {s['unseen']:.3f} | {d:+.3f} | {s['higher_unseen']} of {n} | {s['p']:.2g} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    fire.Fire({"pairs": run, "halves": halves}, serialize=lambda _: None)
