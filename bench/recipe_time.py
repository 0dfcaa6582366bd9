"""Benchmark: two runs of the SSimNet training recipe side by side, stage by stage: seconds, and whether each stage's
checkpoint has the same bytes.

A training speed change is kept only at equal checkpoints. Run ``configs/recipe.json`` with the same seed from the two
versions (one after the other on an otherwise idle machine), then

    python -m bench.recipe_time --a RECIPE_OUT_A --b RECIPE_OUT_B --out bench/results/training_time/RESULT.md

It reads each run's ``recipe.json`` (the seconds ``scripts/recipe.py`` records per stage) and its stages' ``model.pt``,
and, from each stage's log, the seconds of the teacher's labels and of the training epochs, where the log has them.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import fire

from bench.report_files import print_and_save

#: ignite's per-epoch line, "Epoch[12] Complete. Time taken: 00:00:08.123"
_EPOCH = re.compile(r"Epoch\[\d+\] Complete\. Time taken: (\d+):(\d+):([\d.]+)")
#: tqdm's last "teacher labels" bar, "... 30/30 [01:17<00:00, ..."
_TEACHER = re.compile(r"teacher labels: 100%\|[^|]*\| \d+/\d+ \[(?:(\d+):)?(\d+):(\d+)<")


def _sha(path: Path) -> str | None:
    return hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else None


def _log_seconds(log: Path) -> dict[str, float]:
    """Seconds of the epochs (summed) and of the teacher's labels, read off a stage's log (0 where absent)."""
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    epochs = sum(int(h) * 3600 + int(m) * 60 + float(s) for h, m, s in _EPOCH.findall(text))
    bars = _TEACHER.findall(text)
    teacher = 0.0
    if bars:
        h, m, s = bars[-1]
        teacher = int(h or 0) * 3600 + int(m) * 60 + int(s)
    return {"epochs": epochs, "teacher": teacher}


def compare(a: str, b: str) -> list[dict]:
    """Per stage of both runs: seconds (whole stage, epochs, teacher labels) of each, and whether the checkpoints match."""
    runs = []
    for folder in (Path(a), Path(b)):
        record = folder / "recipe.json"
        if not record.is_file():
            raise SystemExit(f"no recipe.json in {folder}: the recipe has not finished there")
        runs.append((folder, json.loads(record.read_text(encoding="utf-8"))))
    (fa, ra), (fb, rb) = runs
    names = [s["stage"] for s in ra["stages"]]
    if names != [s["stage"] for s in rb["stages"]]:
        raise SystemExit(f"the runs have different stages: {names} and {[s['stage'] for s in rb['stages']]}")
    rows = []
    for sa, sb in zip(ra["stages"], rb["stages"]):
        name = sa["stage"]
        la, lb = _log_seconds(fa / f"{name}.log"), _log_seconds(fb / f"{name}.log")
        rows.append(
            {
                "stage": name,
                "seconds_a": sa["seconds"],
                "seconds_b": sb["seconds"],
                "epochs_a": la["epochs"],
                "epochs_b": lb["epochs"],
                "teacher_a": la["teacher"],
                "teacher_b": lb["teacher"],
                "same_checkpoint": _sha(Path(sa["model"])) == _sha(Path(sb["model"])) is not None,
            }
        )
    rows.append(
        {
            "stage": "recipe",
            "seconds_a": ra["seconds"],
            "seconds_b": rb["seconds"],
            "epochs_a": sum(r["epochs_a"] for r in rows),
            "epochs_b": sum(r["epochs_b"] for r in rows),
            "teacher_a": sum(r["teacher_a"] for r in rows),
            "teacher_b": sum(r["teacher_b"] for r in rows),
            "same_checkpoint": _sha(Path(ra["final"])) == _sha(Path(rb["final"])) is not None,
        }
    )
    return rows


def run(a: str, b: str, out: str | None = None) -> str:
    """Compare the recipe runs in ``a`` and ``b``; print (and write to ``out``) a markdown table."""
    rows = compare(a, b)
    lines = [
        f"Recipe runs `{a}` (a) and `{b}` (b): seconds per stage (b / a), and whether the checkpoints have the same bytes.",
        "",
        "| stage | a: s | b: s | b / a | epochs a: s | epochs b: s | teacher labels a: s | teacher labels b: s "
        "| same checkpoint |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["seconds_b"] / r["seconds_a"] if r["seconds_a"] else float("nan")
        lines.append(
            f"| {r['stage']} | {r['seconds_a']:.1f} | {r['seconds_b']:.1f} | {ratio:.3f} | {r['epochs_a']:.1f} "
            f"| {r['epochs_b']:.1f} | {r['teacher_a']:.0f} | {r['teacher_b']:.0f} | {'yes' if r['same_checkpoint'] else 'no'} |"
        )
    total = rows[-1]
    lines += ["", f"Whole recipe: {total['seconds_a'] / 60:.1f} min (a), {total['seconds_b'] / 60:.1f} min (b)."]
    return print_and_save("\n".join(lines) + "\n", out)


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
