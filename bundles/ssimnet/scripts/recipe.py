"""The whole SSimNet training recipe in one resumable command: base training, then self-training rounds by the rule.

The recipe is three kinds of run of this bundle, each its own ``python -m monai.bundle run`` (so each is exactly what a
user would type, with its own log): ``train.json`` on the FCM pseudo labels (the *base*), then ``self_train.json`` over
``train.json`` with the previous stage's checkpoint as the teacher (*round 1, 2, ...*). Rounds stop when the round
agreement (:func:`scripts.self_training.round_agreement`: how much the last round still changed the masks) reaches
``stop_agreement``, or after ``max_rounds``. No label is read anywhere.

Every stage runs in ``output_dir/<stage>`` with its log beside it (``<stage>.log``) and leaves ``stage.json`` when it
has finished; a rerun of the same command skips finished stages and the unfinished one resumes from its last
checkpoint (``train.json``'s ``resume``), so a long run can be interrupted. ``output_dir/recipe.json`` records each
stage's seconds and agreement, and the final checkpoint is copied to ``model_path``. The rounds share one teacher cache,
``output_dir/teacher_cache``: a round's agreement segments the tiles with its student, the next round's teacher, and
leaves those maps there, so the next round does not segment them again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from labelfree.core.imageio import atomic_path, save_text
from labelfree.engines.handlers import optimizer_path

__all__ = ["stage_command", "run_recipe"]

#: the configs of each kind of stage, relative to the bundle root
BASE_CONFIGS = ("configs/train.json",)
ROUND_CONFIGS = ("configs/train.json", "configs/self_train.json")


def stage_command(bundle_root: str | os.PathLike, configs: tuple[str, ...], overrides: Mapping[str, Any]) -> list[str]:
    """The ``python -m monai.bundle run`` command line of one stage.

    Args:
        bundle_root: the bundle folder (holds ``configs/``).
        configs: config files relative to ``bundle_root``, laid over each other in order.
        overrides: ``--key value`` pairs; a list or dict value is passed as JSON, anything else as ``str``, except
            the strings ``true`` and ``false`` (a JSON boolean in ``--round_overrides`` reaches the recipe as fire's
            string), passed as ``True`` and ``False``: the stage's own command line reads only Python's spelling as a
            boolean, and the string ``'false'`` would switch an option on.

    Returns:
        the argument list for :func:`subprocess.run`.
    """
    root = Path(bundle_root).resolve()
    files = [str(root / c) for c in configs]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "[" + ",".join(repr(f) for f in files) + "]"]
    cmd += ["--bundle_root", str(root)]
    for key, value in overrides.items():
        if isinstance(value, (list, dict)):
            text = json.dumps(value)
        elif isinstance(value, str) and value.lower() in ("true", "false"):
            text = value.capitalize()
        else:
            text = str(value)
        cmd += [f"--{key}", text]
    return cmd


def _run_subprocess(cmd: list[str], log: Path) -> None:
    """Run one stage with its output appended to ``log``; a failure is one line naming the log."""
    with open(log, "a", encoding="utf-8") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=Path(cmd[cmd.index("--bundle_root") + 1]))
    if proc.returncode != 0:
        raise RuntimeError(f"recipe stage failed (exit {proc.returncode}); its log: {log}")


def run_recipe(
    bundle_root: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    seed: int = 0,
    stop_agreement: float = 0.97,
    max_rounds: int = 3,
    cpu_bf16: bool = False,
    base_overrides: Mapping[str, Any] | None = None,
    round_overrides: Mapping[str, Any] | None = None,
    model_path: str | os.PathLike | None = None,
    run_stage: Callable[[list[str], Path], None] = _run_subprocess,
) -> dict:
    """Train the base network, then self-training rounds until the round agreement reaches ``stop_agreement``.

    Args:
        bundle_root: this bundle's folder.
        dataset_dir: the unlabelled training images.
        output_dir: one sub-folder and one log per stage, and ``recipe.json``.
        seed: every stage's seed.
        stop_agreement: stop after the first round whose agreement is at least this (fixed in advance, never tuned
            on scores).
        max_rounds: stop after this many rounds whatever the agreement (0: the base only).
        cpu_bf16: train every stage under bfloat16 autocast on the CPU (``train.json``'s ``cpu_bf16``); worth it only
            where the CPU computes bfloat16 natively (:func:`labelfree.engines.inferers.native_bf16_cpu`).
        base_overrides, round_overrides: extra ``--key value`` overrides of the base run and of every round.
        model_path: where the final checkpoint (and its optimizer state, when there is one) is copied.
        run_stage: runs one stage's command line, appending its output to the given log (replaced in tests).

    Returns:
        the ``recipe.json`` record: each stage's name, seconds (of this run; a skipped stage keeps its first
        figure), agreement and checkpoint, the stopping reason and the final checkpoint.
    """
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    common = {"dataset_dir": str(Path(dataset_dir).resolve()), "seed": int(seed), "cpu_bf16": bool(cpu_bf16)}
    stages: list[dict] = []

    def stage(name: str, configs: tuple[str, ...], overrides: Mapping[str, Any]) -> dict:
        folder = out / name
        done = folder / "stage.json"
        if done.is_file():
            record = json.loads(done.read_text(encoding="utf-8"))
            print(f"recipe: {name} already finished ({record['seconds']:.0f} s), skipped", flush=True)
            return record
        print(f"recipe: {name} ... (log: {out / (name + '.log')})", flush=True)
        start = time.perf_counter()
        run_stage(
            stage_command(bundle_root, configs, {**common, **overrides, "output_dir": str(folder)}), out / f"{name}.log"
        )
        record = {"stage": name, "seconds": round(time.perf_counter() - start, 1), "model": str(folder / "model.pt")}
        agreement_file = folder / "round_agreement.json"
        if agreement_file.is_file():
            record["agreement"] = json.loads(agreement_file.read_text(encoding="utf-8"))["round_agreement"]
        save_text(done, json.dumps(record, indent=4) + "\n")
        said = f", agreement {record['agreement']:.4f}" if "agreement" in record else ""
        print(f"recipe: {name} finished in {record['seconds']:.0f} s{said}", flush=True)
        return record

    stages.append(stage("base", BASE_CONFIGS, dict(base_overrides or {})))
    stopped = f"max_rounds ({max_rounds})"
    for r in range(1, max_rounds + 1):
        teacher = stages[-1]["model"]
        # one teacher cache for all rounds: a round's agreement leaves its student's maps there, the next round's labels
        shared = {"cache_dir": str(out / "teacher_cache")}
        stages.append(stage(f"round{r}", ROUND_CONFIGS, {**shared, **(round_overrides or {}), "teacher_path": teacher}))
        if stages[-1].get("agreement", float("nan")) >= stop_agreement:
            stopped = f"agreement {stages[-1]['agreement']:.4f} >= {stop_agreement}"
            break
    final = Path(stages[-1]["model"])
    if model_path is not None:
        target = Path(model_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        for src, dst in ((final, target), (optimizer_path(final), optimizer_path(target))):
            if src.is_file():
                with atomic_path(dst) as tmp:
                    shutil.copyfile(src, tmp)
    record = {
        "stages": stages,
        "seconds": round(sum(s["seconds"] for s in stages), 1),
        "stopped": stopped,
        "final": str(final),
        "model_path": None if model_path is None else str(model_path),
    }
    save_text(out / "recipe.json", json.dumps(record, indent=4) + "\n")
    print(f"recipe: {len(stages) - 1} round(s), stopped by {stopped}; {record['seconds'] / 60:.1f} min; final {final}")
    return record
