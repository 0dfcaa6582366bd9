"""Arms of an experiment side by side, per seed: each arm's harness reports → one table with Wilcoxon tests.

Reads harness report folders laid out as ``ROOT/<data set>/<arm>/seed<N>`` (each written by ``python -m bench.harness
compare`` for one training seed's checkpoint; labels were read by the harness only to score) and prints, per data set
and arm, each seed's Dice / AJI / PQ / precision / recall, their mean ± sample std, the Wilcoxon signed-rank test of
each arm against the first one (Dice, AJI and PQ) on the per-tile scores averaged over the seeds both arms have, the
DCGN Table IV degeneration counts (a class above 97 % or below 1 % of a tile) where the harness gives them, and each
seed's worst tile by predicted / true nucleus area (issue 17's sparse-tile bound; pixel recall / precision). Written to
``ROOT/table.md`` and ``ROOT/table.json`` (``--name`` for another stem).

An arm may live under another root: ``NAME@ROOT2`` reads ``ROOT2/<data set>/NAME/seed<N>`` (the same checkpoints
scored once for another experiment are not copied), and ``NAME@ROOT2`` with ``{ds}`` in ``ROOT2`` reads
``ROOT2/seed<N>`` with the data set filled in (``seed_spread``'s layout, ``.../<data set>/seed<N>``); with ``{seed}``
as well, ``ROOT2`` is each seed's report folder itself (checkpoints scored once as arms of their own, one per seed);
``--seeds 0,1,2`` keeps only those seeds of every arm.

    python -m bench.arm_table --root bench/results/dcgn_pretraining --arms random,pretrained
    python -m bench.arm_table --root bench/results/v3/recipe_time --arms shipped,e60_lr2e-4_r20
    python -m bench.arm_table --root bench/results/dcgn_pretraining \
        --arms mixture@bench/results/dcgn_seeds,pretrained_mixture --seeds 0,1,2 --name table_mixture
    python -m bench.arm_table --root bench/results/v5/seeds --arms "paste_0.4.0@bench/results/v4/seeds/{ds},lr1e4"
"""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path

import fire
import numpy as np

from bench.harness.results_csv import read_one_method
from bench.report_files import save_report
from bench.signed_rank import signed_rank_p

METRICS = ("dice", "aji", "pq", "precision", "recall")


def _seeds(folder: Path) -> dict[int, Path]:
    found = {}
    for sub in folder.glob("seed*"):
        m = re.fullmatch(r"seed(\d+)", sub.name)
        if m and (sub / "results.csv").is_file():
            found[int(m.group(1))] = sub
    return dict(sorted(found.items()))


def _per_tile(report: Path) -> dict[str, dict[str, float]]:
    return read_one_method(report / "results.csv", METRICS)


def worst_area_ratio(per_tile: dict[str, dict[str, float]]) -> tuple[float, str]:
    """The largest predicted / true nucleus area of a report's tiles and that tile: pixel recall / precision, which is
    ``(TP / true) / (TP / predicted)``; infinite where nothing predicted is right."""
    ratios = {i: t["recall"] / t["precision"] if t["precision"] > 0 else float("inf") for i, t in per_tile.items()}
    tile = max(ratios, key=ratios.get)
    return ratios[tile], tile


def _degeneration(report: Path) -> tuple[int, int, int]:
    """(collapsed, empty, image-runs) from the harness summary (its Table IV counts); none for a report folder that
    holds only ``results.csv`` (written by a post-processing benchmark, not by the harness)."""
    summary = report / "summary.json"
    deg = json.loads(summary.read_text()).get("degeneration", {}) if summary.is_file() else {}
    for counts in deg.values():
        return int(counts["collapse"]), int(counts["empty_class"]), int(counts["image_runs"])
    return 0, 0, 0


def _arm_dir(base: Path, ds: str, arm: str) -> Path:
    """``base/ds/arm``, ``ROOT2/ds/NAME`` for an arm written ``NAME@ROOT2``, or ``ROOT2`` with ``{ds}`` filled in when
    ``ROOT2`` names the data set itself (seed folders laid out as ``.../<data set>/seed<N>``, one recipe per root)."""
    name, _, other = arm.partition("@")
    if "{ds}" in other:
        return Path(other.format(ds=ds))
    return (Path(other) if other else base) / ds / name


def _arm_reports(base: Path, ds: str, arm: str) -> dict[int, Path]:
    """Seed → report folder of one arm. ``NAME@PATTERN`` with ``{seed}`` in ``PATTERN`` (and ``{ds}`` for the data
    set) names each seed's report folder itself, for checkpoints scored once under other names (e.g.
    ``default@bench/results/dcgn_seed_ensemble/{ds}/single{seed}/seed0``); otherwise the ``seed<N>`` folders of
    :func:`_arm_dir`."""
    _, _, other = arm.partition("@")
    if "{seed}" not in other:
        return _seeds(_arm_dir(base, ds, arm))
    pattern = other.replace("{ds}", ds)
    regex = re.compile(re.escape(pattern).replace(re.escape("{seed}"), r"(\d+)"))
    found = {}
    for path in glob.glob(pattern.replace("{seed}", "*")):
        m = regex.fullmatch(path)
        if m and (Path(path) / "results.csv").is_file():
            found[int(m.group(1))] = Path(path)
    return dict(sorted(found.items()))


def summarise(root: str, arms: str | tuple, seeds: str | int | tuple | None = None, name: str = "table") -> dict:
    """Build the table of every data set under ``root``; returns it as a dict.

    Args:
        root: folder of ``<data set>/<arm>/seed<N>`` report folders; ``table.md`` and ``table.json`` are written there.
        arms: comma-separated arm names, the first the reference of the Wilcoxon tests; ``NAME@ROOT2`` for an arm under
            another root.
        seeds: only these seeds of every arm (default: all).
        name: stem of the written files (``<name>.md``, ``<name>.json``), so that several tables can share a root.
    """
    names = [a.strip() for a in (arms.split(",") if isinstance(arms, str) else arms) if str(a).strip()]
    if seeds is None or seeds == "":
        keep = None
    else:  # fire gives "0,1,2" as a tuple, "3" as an int
        keep = {int(x) for x in (str(seeds).split(",") if isinstance(seeds, (str, int)) else seeds)}
    base = Path(root)
    result: dict = {}
    command = f"python -m bench.arm_table --root {root} --arms {','.join(names)}"
    if keep is not None:
        command += f" --seeds {','.join(map(str, sorted(keep)))}"
    if name != "table":
        command += f" --name {name}"
    lines: list[str] = [f"`{command}`", ""]
    for ds in sorted(p.name for p in base.iterdir() if p.is_dir()):
        reports = {arm: _arm_reports(base, ds, arm) for arm in names}
        tiles = {arm: {s: _per_tile(f) for s, f in reports[arm].items() if keep is None or s in keep} for arm in names}
        if not all(tiles.values()):
            continue
        result[ds] = {}
        lines += [
            f"## {ds}",
            "",
            "| arm | seed | " + " / ".join(METRICS) + " | worst predicted / true area | collapsed / empty |",
            "|---|---|---|---|---|",
        ]
        for arm in names:
            per_seed = {
                s: {k: float(np.mean([t[k] for t in v.values()])) for k in METRICS} for s, v in tiles[arm].items()
            }
            values = np.array([[r[k] for k in METRICS] for r in per_seed.values()])
            mean = values.mean(axis=0)
            std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(len(METRICS))
            degen = [_degeneration(reports[arm][s]) for s in per_seed]
            collapsed, empty, runs = (sum(d[i] for d in degen) for i in range(3))
            worst = {s: worst_area_ratio(v) for s, v in tiles[arm].items()}
            for s, r in per_seed.items():
                ratio, tile = worst[s]
                lines.append(
                    f"| {arm} | {s} | " + " / ".join(f"{r[k]:.3f}" for k in METRICS) + f" | {ratio:.2f} ({tile}) | |"
                )
            lines.append(
                f"| **{arm}** | mean ± std ({len(per_seed)}) | "
                + " / ".join(f"{m:.3f} ± {d:.3f}" for m, d in zip(mean, std))
                + f" | {max(r for r, _ in worst.values()):.2f} (highest) | {collapsed} / {empty} of {runs} |"
            )
            result[ds][arm] = {
                "seeds": per_seed,
                "mean": dict(zip(METRICS, mean.tolist())),
                "std": dict(zip(METRICS, std.tolist())),
                "worst_area_ratio": {s: {"ratio": r, "tile": t} for s, (r, t) in worst.items()},
                "collapsed": collapsed,
                "empty": empty,
                "image_runs": runs,
            }
        ref = names[0]
        if len(names) > 1:  # one arm has nothing to be compared with
            lines += [
                "",
                f"Wilcoxon signed-rank against `{ref}`, per tile, scores averaged over the seeds both arms have:",
                "",
            ]
        for arm in names[1:]:
            seeds = sorted(set(tiles[ref]) & set(tiles[arm]))
            images = sorted(set.intersection(*(set(tiles[a][s]) for a in (ref, arm) for s in seeds)))
            tests = {}
            for k in ("dice", "aji", "pq"):
                a = np.array([np.mean([tiles[ref][s][i][k] for s in seeds]) for i in images])
                b = np.array([np.mean([tiles[arm][s][i][k] for s in seeds]) for i in images])
                p = signed_rank_p(b, a)
                tests[k] = {"delta": float(np.mean(b - a)), "higher": int(np.sum(b > a)), "tiles": len(images), "p": p}
            result[ds][arm]["vs_" + ref] = tests
            lines.append(
                f"- `{arm}` (seeds {seeds}): "
                + "; ".join(
                    f"{k} {t['delta']:+.3f}, higher on {t['higher']} of {t['tiles']} tiles, p = {t['p']:.2g}"
                    for k, t in tests.items()
                )
            )
        lines.append("")
    if not result:
        raise SystemExit(f"no data set under {root} has report folders for every arm of {names}")
    save_report(base, name, result, "\n".join(lines))
    return result


if __name__ == "__main__":
    fire.Fire(summarise, serialize=lambda _: None)
