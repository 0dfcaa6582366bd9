"""The comparison harness: run methods × seeds on a folder of tiles, score them against labels, write the evidence.

Each (method, seed) runs in its own process, so a crash is contained (reported in the table, the others go on), its
peak memory is its own, and a finished run is never recomputed: ``<out>/runs/<method>/seed<k>/done.json`` marks it.
Labels are read only after a method has finished (``bench.harness.scoring``).

Outputs in ``out``: ``results.csv``, ``summary.json``, ``table.md``, ``degeneration.md``, ``speed.md``, ``report.md``
(the three tables together), ``boxplot.png`` and ``overlays.png``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from tqdm import tqdm

from bench.harness.figures import boxplot, overlay_grid
from bench.harness.methods import METHODS, REPO
from bench.harness.results_csv import write_results_csv
from bench.harness.scoring import score_run
from bench.harness.tables import (
    degeneration,
    degeneration_table,
    per_seed_means,
    results_table,
    speed_table,
    summarise,
    wilcoxon_vs_best,
)
from labelfree.core.imageio import list_images, save_text

__all__ = ["compare", "run_one", "parse_methods", "parse_seeds"]


def parse_methods(methods: str | tuple | list) -> list[str]:
    """``"a,b"`` or a sequence → names, checked against :data:`bench.harness.methods.METHODS`."""
    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if str(m).strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    return names


def parse_seeds(seeds: int | str | tuple | list) -> list[int]:
    """An int ``n`` → seeds ``0..n-1``; ``"0,3"`` or a sequence → those seeds."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {seeds}")
        return list(range(seeds))
    items = seeds.split(",") if isinstance(seeds, str) else seeds
    return [int(s) for s in items if str(s).strip() != ""]


#: JSON literals that fire, which parses the command line, leaves as strings inside a dict (``{"a": false}``)
_JSON_LITERALS = {"true": True, "false": False, "null": None}


def _json_values(value: object) -> object:
    if isinstance(value, dict):
        return {k: _json_values(v) for k, v in value.items()}
    return _JSON_LITERALS.get(value, value) if isinstance(value, str) else value


def _as_dict(options: str | dict | None) -> dict:
    if options is None or options == "":
        return {}
    return _json_values(json.loads(options) if isinstance(options, str) else dict(options))


def run_one(method: str, images: str, run_dir: str, seed: int = 0, options: str | dict | None = None) -> None:
    """Run one method with one seed (the harness calls this in a child process) and write ``timings.json``."""
    run_path = Path(run_dir)
    run_path.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings = METHODS[method].run(Path(images), run_path, int(seed), _as_dict(options))
    timings["wall_seconds"] = time.perf_counter() - t0
    peak_kb = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    timings["peak_memory_mb"] = peak_kb / 1024.0  # Linux reports kilobytes
    save_text(run_path / "timings.json", json.dumps(timings, indent=2))


def _run_dir(runs: Path, method: str, seed: int, options: dict) -> Path:
    name = f"seed{seed}"
    if options:
        name += "-" + hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
    fingerprint = METHODS[method].fingerprint
    if fingerprint is not None:
        name += "-" + fingerprint()
    return runs / method / name


def _launch(method: str, images: Path, run_dir: Path, seed: int, options: dict) -> str | None:
    """Run one method/seed in a child process; returns ``None`` on success, else the error's last line."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "run.log"
    cmd = [sys.executable, "-m", "bench.harness", "run_one", "--method", method, "--images", str(images)]
    cmd += ["--run_dir", str(run_dir), "--seed", str(seed), "--options", json.dumps(options)]
    # the harness is not installed: the child finds it in the repository, whatever its working directory
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    if rc == 0 and (run_dir / "timings.json").is_file():
        return None
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return f"exit {rc}: {lines[-1][:160] if lines else 'no output'} (log: {log})"


def _other_inputs(record: dict, run_dir: Path, tiles: list[Path], images: Path, labels: Path) -> str | None:
    """Why a finished run cannot be reused for these images and labels, or ``None`` if it can.

    A run's folder is named by its method, seed and options, not by its inputs, so a ``runs`` folder shared by two
    data sets would otherwise hand the first one's predictions and scores to the second. Runs written before the
    inputs were recorded are checked by the tiles they scored.
    """
    made_on = record.get("images")
    if made_on is not None and (made_on != str(images) or record.get("labels", str(labels)) != str(labels)):
        return f"{run_dir} holds a run on {made_on}; give {images} its own --runs folder"
    if made_on is None and set(record.get("scores", {})) != {p.stem for p in tiles}:
        return f"{run_dir} holds a run on other tiles; give {images} its own --runs folder"
    return None


def _rows(method: str, seed: int, scores: dict, timings: dict) -> list[dict]:
    secs = timings.get("inference_seconds_per_image")
    return [{"method": method, "seed": seed, "image": image, "seconds": secs, **s} for image, s in scores.items()]


def compare(
    images: str,
    labels: str,
    methods: str | tuple = "ssimnet,dcgn,otsu_ws,kmeans,gmm",
    seeds: int | str | tuple = 5,
    out: str = "bench/compare",
    options: str | dict | None = None,
    n_overlays: int = 3,
    markdown: str | None = None,
    runs: str | None = None,
    notes: str | None = None,
) -> dict:
    """Run every method (every seed for stochastic ones) on ``images``, score against ``labels``, write tables.

    Args:
        images: folder of tiles (png/tif/jpg).
        labels: folder of instance maps named like the tiles; read only to score.
        methods: comma-separated names from :data:`bench.harness.methods.METHODS`.
        seeds: number of seeds (``0..n-1``) or a comma-separated list; deterministic methods run once.
        out: output folder; runs are kept under ``out/runs`` and reused when the command is repeated.
        options: per-method overrides, JSON ``{"dcgn": {"max_epochs": 30}}`` (passed to the bundles' configs).
        n_overlays: number of tiles in ``overlays.png`` (0: no overlay figure).
        markdown: also write the report with its figures to this file (``BENCHMARKS.md``).
        runs: where the method runs are kept (default ``out/runs``); several reports can share one folder. A run made
            with other ``options`` lives in another sub-folder, so it is never reused by mistake; a finished run made on
            other images or labels is not reused either: that method and seed fail with a one-line reason.
        notes: a markdown file appended to the ``markdown`` report (how the runs were made, caveats).

    Returns:
        the summary that is also written to ``summary.json``.
    """
    names, seed_list = parse_methods(methods), parse_seeds(seeds)
    opts = _as_dict(options)
    img_dir, lab_dir, out_dir = Path(images).resolve(), Path(labels).resolve(), Path(out).resolve()
    if not lab_dir.is_dir():
        raise FileNotFoundError(f"labels folder not found: {lab_dir}")
    tiles = list_images(img_dir)
    runs_dir = Path(runs).resolve() if runs else out_dir / "runs"
    plan = [(m, s) for m in names for s in (seed_list if METHODS[m].stochastic else seed_list[:1])]
    rows: list[dict] = []
    timings: dict[str, list[dict]] = {}
    failures: dict[tuple[str, int], str] = {}
    for method, seed in tqdm(plan, desc="methods × seeds", unit="run"):
        run_dir = _run_dir(runs_dir, method, seed, opts.get(method, {}))
        done = run_dir / "done.json"
        if not done.is_file():
            tqdm.write(f"running {method} seed {seed} (log: {run_dir / 'run.log'})")
            error = _launch(method, img_dir, run_dir, seed, opts.get(method, {}))
            if error is None:
                run_timings = json.loads((run_dir / "timings.json").read_text())
                k = run_timings.get("n_classes", METHODS[method].n_classes)
                try:
                    scores = score_run(run_dir / "pred", lab_dir, img_dir, k)
                except (FileNotFoundError, ValueError) as exc:
                    error = f"scoring failed: {exc}"
                else:
                    record = {"timings": run_timings, "scores": scores, "images": str(img_dir), "labels": str(lab_dir)}
                    save_text(done, json.dumps(record))
                    record = json.loads(done.read_text())  # the rows read what a later reuse reads
        else:
            record = json.loads(done.read_text())
            error = _other_inputs(record, run_dir, tiles, img_dir, lab_dir)
        if error is not None:
            failures[(method, seed)] = error
            tqdm.write(f"{method} seed {seed} failed: {error}")
            continue
        timings.setdefault(method, []).append(record["timings"])
        rows.extend(_rows(method, seed, record["scores"], record["timings"]))

    failed_methods = {m: err for (m, _), err in failures.items() if m not in timings}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_results_csv(rows, out_dir / "results.csv")
    n_classes = {m: METHODS[m].n_classes for m in names}
    table = results_table(rows, names, failed_methods)
    if failures:
        table += "\n\nFailed runs:\n" + "\n".join(f"- {m} seed {s}: {e}" for (m, s), e in sorted(failures.items()))
    deg_table = degeneration_table(rows, names, n_classes)
    spd_table = speed_table(timings, names)
    save_text(out_dir / "table.md", table + "\n")
    save_text(out_dir / "degeneration.md", deg_table + "\n")
    save_text(out_dir / "speed.md", spd_table + "\n")
    header = (
        f"Images: `{img_dir}` ({len(tiles)} tiles); methods: {', '.join(names)}; seeds: {seed_list} "
        f"(deterministic methods once); machine: {os.cpu_count()} CPU cores, "
        f"{platform.processor() or platform.machine()}, GPU: {_gpu_name()}; date: {date.today().isoformat()}."
    )
    if Path(sys.argv[0]).parent.name == "bench" and Path(sys.argv[0]).name == "__main__.py":
        header = f"Command: `python -m bench.harness {shlex.join(sys.argv[1:])}`\n\n{header}"
    descriptions = "\n".join(f"- `{m}`: {METHODS[m].description}" for m in names)
    report = (
        f"{header}\n\n{descriptions}\n\n## Accuracy (mean ± std over runs (best run); p: Wilcoxon signed-rank vs the "
        f"best method, per-image pairs; oracle columns pick the class with labels, as the papers did, and are not "
        f"label-free)\n\n{table}\n\n## Degeneration (DCGN Table IV)\n\n{deg_table}\n\n## Speed\n\n{spd_table}\n"
    )
    save_text(out_dir / "report.md", report)
    if rows:
        per_seed = {m: per_seed_means(rows, m) for m in ("dice", "aji")}
        boxplot(per_seed, names, out_dir / "boxplot.png")
        first_seed = {m: min(s for mm, s in plan if mm == m and (mm, s) not in failures) for m in timings}
        preds = {m: _run_dir(runs_dir, m, first_seed[m], opts.get(m, {})) / "pred" for m in names if m in timings}
        if n_overlays > 0:  # 0 asks for no figure (matplotlib refuses a grid of no rows)
            overlay_grid(tiles[:n_overlays], lab_dir, preds, out_dir / "overlays.png")
    if markdown:
        md_path = Path(markdown).resolve()
        figures = "".join(
            f"\n![{name}]({os.path.relpath(out_dir / name, md_path.parent)})\n"
            for name in ("boxplot.png", "overlays.png")
            if (out_dir / name).is_file()
        )
        extra = Path(notes).read_text() if notes else ""
        save_text(md_path, f"# Benchmarks\n\n{report}\n## Figures\n{figures}\n{extra}")
    summary = {
        "images": str(img_dir),
        "n_images": len(tiles),
        "methods": names,
        "seeds": seed_list,
        "metrics": summarise(rows),
        "wilcoxon": {m: wilcoxon_vs_best(rows, m)[1] for m in ("dice", "aji")},
        "degeneration": degeneration(rows),
        "timings": timings,
        "failures": {f"{m}/seed{s}": e for (m, s), e in failures.items()},
    }
    save_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    print(report)
    return summary


def _gpu_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:  # noqa: BLE001 - the report must not fail on a broken CUDA install
        return "unknown"
