"""Benchmark summary: every change measured on both labelled sets, as its change on MoNuSeg against its change on CPM-15.

Each :mod:`bench.arm_table` table (``table*.json`` under ``root``) holds arms scored per seed on MoNuSeg train and on
CPM-15, the first arm the reference the others were measured against. For every other arm this takes the mean, over
the seeds it shares with the reference on both sets, of the arm's Dice, AJI and PQ minus the reference's, and puts all
of them in one table and one figure. It answers a question no single table can: do the changes that help one set
help the other, or do they trade one against the other? Nothing is run; only committed results are read.

    python -m bench.trade_map --root bench/results --out bench/results/trade_map
"""

from __future__ import annotations

import json
from pathlib import Path

import fire
import numpy as np

from bench.report_files import save_report

SETS = ("monuseg", "cpm15")
METRICS = ("dice", "aji", "pq")
#: half-width of the figure's zoomed row and of the "small changes" correlation
ZOOM = 0.03


def _is_arm_table(table: object) -> bool:
    """Whether a JSON document has :mod:`bench.arm_table`'s shape: data set → arm → ``{"seeds": {...}, ...}``."""
    return isinstance(table, dict) and all(
        isinstance(arms, dict) and arms and all(isinstance(a, dict) and "seeds" in a for a in arms.values())
        for arms in table.values()
    )


def arm_changes(table: dict) -> list[dict]:
    """Every non-reference arm of one arm table scored on both sets: its mean change from the reference.

    Args:
        table: an arm table's JSON (data set → arm → per-seed scores); the first arm of each set is the reference.

    Returns:
        one row per arm: ``arm``, ``reference``, ``seeds`` (those both arms have on both sets) and ``<set>_<metric>``
        changes; an arm that shares no seed with the reference is left out.
    """
    if not all(s in table for s in SETS):
        return []
    reference = next(iter(table[SETS[0]]))
    if reference != next(iter(table[SETS[1]])):
        return []
    rows = []
    for arm in table[SETS[0]]:
        if arm == reference or arm not in table[SETS[1]]:
            continue
        shared = set.intersection(*(set(table[s][a]["seeds"]) for s in SETS for a in (arm, reference)))
        if not shared:
            continue
        seeds = sorted(shared, key=int)
        row = {"arm": arm, "reference": reference, "seeds": [int(s) for s in seeds]}
        for s in SETS:
            for m in METRICS:
                diffs = [table[s][arm]["seeds"][k][m] - table[s][reference]["seeds"][k][m] for k in seeds]
                row[f"{s}_{m}"] = float(np.mean(diffs))
        rows.append(row)
    return rows


def collect(root: str | Path) -> list[dict]:
    """:func:`arm_changes` of every arm table under ``root``, each row with its table's path (sorted by path)."""
    rows = []
    for path in sorted(Path(root).rglob("table*.json")):
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _is_arm_table(table):
            rows += [{"table": path.as_posix(), **r} for r in arm_changes(table)]
    return rows


def _bundle(table_path: str) -> str:
    return "DCGN" if "dcgn" in table_path else "SSimNet"


def _correlation(rows: list[dict], metric: str) -> float:
    """Pearson's r between the arms' MoNuSeg and CPM-15 changes of ``metric`` (nan under three arms)."""
    if len(rows) < 3:
        return float("nan")
    return float(np.corrcoef([r[f"monuseg_{metric}"] for r in rows], [r[f"cpm15_{metric}"] for r in rows])[0, 1])


def _quadrants(rows: list[dict], metric: str, tol: float) -> dict[str, int]:
    """How many arms move ``metric`` up or down (by more than ``tol``) on each set, grouped by the pair of moves."""
    names = {
        (1, 1): "up on both",
        (1, -1): "up on MoNuSeg, down on CPM-15",
        (-1, 1): "up on CPM-15, down on MoNuSeg",
        (-1, -1): "down on both",
        (1, 0): "up on one, within on the other",
        (0, 1): "up on one, within on the other",
        (-1, 0): "down on one, within on the other",
        (0, -1): "down on one, within on the other",
        (0, 0): "within on both",
    }
    counts = dict.fromkeys(names.values(), 0)
    for r in rows:
        moves = tuple(int(np.sign(d)) if abs(d) > tol else 0 for d in (r[f"monuseg_{metric}"], r[f"cpm15_{metric}"]))
        counts[names[moves]] += 1
    return counts


def figure(rows: list[dict], path: Path, zoom: float = ZOOM) -> None:
    """Each arm's change on MoNuSeg (x) against its change on CPM-15 (y), Dice and AJI; the second row zooms to
    ±``zoom``, where most arms lie, with the arms beyond drawn as triangles on its border."""
    from bench.harness.figures import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 10.4))
    for col, metric in enumerate(("dice", "aji")):
        name = "AJI" if metric == "aji" else "Dice"
        for row, window in enumerate((None, zoom)):
            ax = axes[row, col]
            for bundle, colour in (("SSimNet", "tab:blue"), ("DCGN", "tab:orange")):
                sel = [r for r in rows if _bundle(r["table"]) == bundle]
                x = np.array([r[f"monuseg_{metric}"] for r in sel])
                y = np.array([r[f"cpm15_{metric}"] for r in sel])
                inside = np.ones(x.shape, bool) if window is None else (abs(x) <= window) & (abs(y) <= window)
                label = f"{bundle} ({len(sel)} arms)"
                ax.scatter(x[inside], y[inside], s=16, c=colour, alpha=0.75, label=label)
                if window is not None and (~inside).any():
                    ax.scatter(
                        np.clip(x[~inside], -window, window),
                        np.clip(y[~inside], -window, window),
                        s=22,
                        c=colour,
                        marker="^",
                        alpha=0.5,
                    )
            ax.axhline(0, color="grey", lw=0.8)
            ax.axvline(0, color="grey", lw=0.8)
            if window is not None:
                ax.plot([-window, window], [-window, window], color="grey", lw=0.6, ls=":")
                ax.set_xlim(-window * 1.05, window * 1.05)
                ax.set_ylim(-window * 1.05, window * 1.05)
            ax.set_xlabel(f"change in mean {name}, MoNuSeg train")
            ax.set_ylabel(f"change in mean {name}, CPM-15")
            scope = "every arm" if window is None else f"within ±{window} (triangles: beyond, on the border)"
            ax.set_title(f"{name}: {scope}", fontsize=10)
            ax.legend(loc="upper left", fontsize=8)
    _save(plt, fig, path)


def run(root: str = "bench/results", out: str = "bench/results/trade_map", tol: float = 0.002) -> dict:
    """Collect every arm's change on both sets; write ``trade_map.{md,json,png}`` under ``out``.

    Args:
        root: folder searched for arm tables.
        out: output folder.
        tol: a change within ``tol`` on both sets counts as no change.
    """
    rows = collect(root)
    if not rows:
        raise ValueError(f"no arm table under {root} scores an arm on both {SETS[0]} and {SETS[1]}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure(rows, out_dir / "trade_map.png")
    corr = {m: _correlation(rows, m) for m in METRICS}
    small = {m: [r for r in rows if abs(r[f"monuseg_{m}"]) <= ZOOM and abs(r[f"cpm15_{m}"]) <= ZOOM] for m in METRICS}
    corr_small = {m: _correlation(small[m], m) for m in METRICS}
    quadrants = {m: _quadrants(rows, m, tol) for m in METRICS}
    lines = [
        "# Every change measured on both labelled sets: MoNuSeg against CPM-15",
        "",
        f"`python -m bench.trade_map --root {root} --out {out}`: {len(rows)} arms of "
        f"{len({r['table'] for r in rows})} arm tables (`bench.arm_table`), each the mean over the seeds it shares "
        "with its table's reference arm of (arm − reference); labels were read only to score them. `trade_map.png` "
        "draws the Dice and AJI columns.",
        "",
        f"| arms whose mean changed ... (within: by {tol} or less) | Dice | AJI | PQ |",
        "|---|---|---|---|",
    ]
    for key in quadrants["dice"]:
        lines.append(f"| {key} | " + " | ".join(str(quadrants[m][key]) for m in METRICS) + " |")
    lines.append(
        "| correlation of the MoNuSeg and CPM-15 changes, every arm | "
        + " | ".join(f"{corr[m]:+.2f}" for m in METRICS)
        + " |"
    )
    lines.append(
        f"| the same over the arms within ±{ZOOM} on both sets (arms) | "
        + " | ".join(f"{corr_small[m]:+.2f} ({len(small[m])})" for m in METRICS)
        + " |"
    )
    lines += [
        "",
        "| table | reference | arm | seeds | MoNuSeg Δ Dice / AJI / PQ | CPM-15 Δ Dice / AJI / PQ |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [" / ".join(f"{r[f'{s}_{m}']:+.3f}" for m in METRICS) for s in SETS]
        seeds = ",".join(map(str, r["seeds"]))
        lines.append(f"| `{r['table']}` | {r['reference']} | {r['arm']} | {seeds} | {cells[0]} | {cells[1]} |")
    result = {
        "rows": rows,
        "quadrants": quadrants,
        "correlation": corr,
        "correlation_small": {m: {"r": corr_small[m], "arms": len(small[m])} for m in METRICS},
        "tol": tol,
        "zoom": ZOOM,
    }
    save_report(out_dir, "trade_map", result, "\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    fire.Fire(run)
