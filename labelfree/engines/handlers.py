"""Ignite handlers the bundles share: resuming training, saving the trained weights, optional TensorBoard, and the
evaluation report."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import torch
from monai.handlers import CheckpointLoader

from labelfree.core.imageio import atomic_path
from labelfree.core.metrics import INSTANCE_METRICS

__all__ = [
    "latest_checkpoint",
    "ResumeFromLatest",
    "ResumableCheckpointSaver",
    "optimizer_path",
    "SaveTrainedWeights",
    "LogAboveProgressBar",
    "optional_tensorboard",
    "EvaluationReport",
]

log = logging.getLogger(__name__)


def latest_checkpoint(ckpt_dir: str | os.PathLike, prefix: str = "checkpoint") -> Path | None:
    """The checkpoint of the highest epoch (``<prefix>_epoch=N.pt``, as MONAI's CheckpointSaver names them)."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return None
    best, best_n = None, -1
    for p in d.glob(f"{prefix}*.pt"):
        m = re.search(r"=(\d+)\.pt$", p.name)
        if m and int(m.group(1)) > best_n:
            best, best_n = p, int(m.group(1))
    return best


class ResumeFromLatest:
    """Resume training from the latest checkpoint in ``ckpt_dir``, if there is one (and ``enabled``).

    Args:
        ckpt_dir: folder written by :class:`ResumableCheckpointSaver`.
        load_dict: objects to restore, e.g. ``{"model": net, "optimizer": opt, "lr_scheduler": s}``; the engine it is
            attached to is restored as ``"trainer"`` (epoch and iteration), which a config cannot reference without
            a circular reference.
        enabled: False makes this a no-op (train from scratch even if checkpoints exist).
    """

    def __init__(self, ckpt_dir: str, load_dict: dict, enabled: bool = True, map_location: object = None):
        self.ckpt_dir, self.load_dict, self.enabled, self.map_location = ckpt_dir, load_dict, enabled, map_location

    def attach(self, engine) -> None:
        path = latest_checkpoint(self.ckpt_dir) if self.enabled else None
        if path is None:
            return
        log.info("resuming from %s", path)
        load_dict = {**self.load_dict, "trainer": engine}
        CheckpointLoader(load_path=str(path), load_dict=load_dict, map_location=self.map_location).attach(engine)


class ResumableCheckpointSaver:
    """Every ``save_interval`` epochs, save ``save_dict`` plus the engine's own state (as ``"trainer"``) to
    ``save_dir/checkpoint_epoch=N.pt``, keeping the ``n_saved`` latest; :class:`ResumeFromLatest` reads them back."""

    def __init__(self, save_dir: str, save_dict: dict, save_interval: int = 5, n_saved: int = 1):
        self.save_dir, self.save_dict, self.save_interval, self.n_saved = save_dir, save_dict, save_interval, n_saved

    def attach(self, engine) -> None:
        from monai.handlers import CheckpointSaver

        CheckpointSaver(
            save_dir=self.save_dir,
            save_dict={**self.save_dict, "trainer": engine},
            save_interval=self.save_interval,
            n_saved=self.n_saved,
        ).attach(engine)


def checkpoint_outputs(ckpt_path: str | os.PathLike, default: int = 2) -> int:
    """The number of output channels of the network whose weights ``ckpt_path`` holds: the length of its last bias.

    SSimNet's self-training may add a distance output to the two class outputs; the inference reads the checkpoint
    to build the matching network. ``default`` when the file is missing (the run's checkpoint check reports that in
    one line) or holds no bias.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        return default
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    biases = [v for k, v in state.items() if k.endswith("bias") and getattr(v, "ndim", 0) == 1]
    return int(biases[-1].shape[0]) if biases else default


def optimizer_path(model_path: str | os.PathLike) -> Path:
    """Where the optimiser state that goes with the weights ``model_path`` lives: ``<stem>.optimizer.pth`` beside it.

    Not ``.pt``: MONAI Label offers every ``models/*.pt`` as a model to serve.
    """
    p = Path(model_path)
    return p.with_name(f"{p.stem}.optimizer.pth")


def _save_atomically(obj: dict, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file, byte for byte the same for the same ``obj``.

    Saved to a file name, torch names the archive inside after it, and the temporary's name is random; saved to an open
    file, the archive has a fixed name, so the same seed gives the same bytes.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


class SaveTrainedWeights:
    """When training completes, write the network's bare state dict to ``model_path`` (the model zoo's
    ``models/model.pt`` format, loadable by ``CheckpointLoader`` and ``ckpt_export`` as it is) and, when an optimiser is
    given, its state to :func:`optimizer_path` (SSimNet's test-time fine-tuning starts from it). Both atomically, only
    when the run completes (an interrupted run leaves the previous files), and only on rank 0 of a distributed run.

    Args:
        model_path: the weights file to write.
        network: the trained network (a ``DistributedDataParallel`` / ``DataParallel`` wrapper is unwrapped).
        optimizer: optional optimiser whose state is saved beside the weights.
        usage: how to use the file, printed after its path.
    """

    def __init__(
        self,
        model_path: str,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        usage: str = "use them with --ckpt_path",
    ):
        self.model_path, self.network, self.optimizer, self.usage = Path(model_path), network, optimizer, usage

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.COMPLETED, self._save)

    def _save(self, _engine) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
            return
        net = self.network.module if hasattr(self.network, "module") else self.network
        _save_atomically(net.state_dict(), self.model_path)
        if self.optimizer is not None:
            _save_atomically(self.optimizer.state_dict(), optimizer_path(self.model_path))
        print(f"trained weights written to {self.model_path.resolve()} ({self.usage})")


class LogAboveProgressBar:
    """While the engine runs, console log lines (loss statistics, epoch summaries) are written through ``tqdm.write``,
    so they print above Ignite's progress bar instead of breaking into it; the logging set-up is restored when the run
    completes.

    Args:
        loggers: the loggers to redirect (default: the root logger, which MONAI's and Ignite's loggers reach).
    """

    def __init__(self, loggers: list[logging.Logger] | None = None):
        self.loggers = loggers
        self._redirect = None

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.COMPLETED, self._stop)

    def _start(self, _engine) -> None:
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._stop(_engine)
        self._redirect = logging_redirect_tqdm(loggers=self.loggers)
        self._redirect.__enter__()

    def _stop(self, _engine) -> None:
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None


def optional_tensorboard(log_dir: str, tag_name: str = "train_loss") -> list:
    """``[TensorBoardStatsHandler]`` when tensorboard is installed, else ``[]`` (it is not a dependency)."""
    from monai.utils import optional_import

    _, has_tb = optional_import("torch.utils.tensorboard", name="SummaryWriter")
    if not has_tb:
        return []
    from monai.handlers import TensorBoardStatsHandler, from_engine

    return [
        TensorBoardStatsHandler(log_dir=log_dir, tag_name=tag_name, output_transform=from_engine(["loss"], first=True))
    ]


class EvaluationReport:
    """Collects per-image scores (``engine.state.output[i][scores_key]``) and, when the run completes, writes
    ``metrics_per_image.csv`` and ``metrics.json`` (per image and mean) to ``output_dir`` and prints the means."""

    def __init__(self, output_dir: str, scores_key: str = "scores", metrics: tuple[str, ...] = INSTANCE_METRICS):
        self.output_dir, self.scores_key, self.metrics = Path(output_dir), scores_key, metrics
        self.rows: list[dict] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _collect(self, engine) -> None:
        out = engine.state.output
        for item in out if isinstance(out, list) else [out]:
            if isinstance(item, dict) and self.scores_key in item:
                self.rows.append(dict(item[self.scores_key]))

    def summary(self) -> dict[str, float]:
        return {m: float(np.mean([r[m] for r in self.rows])) for m in self.metrics} if self.rows else {}

    def _write(self, engine) -> None:
        if not self.rows:
            raise RuntimeError("no image was scored: does every image have a label map?")
        mean = self.summary()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["image", *self.metrics])
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: r[k] for k in ["image", *self.metrics]})
        writer.writerow({"image": "mean", **mean})
        with atomic_path(self.output_dir / "metrics_per_image.csv") as tmp:
            tmp.write_text(buf.getvalue())
        with atomic_path(self.output_dir / "metrics.json") as tmp:
            tmp.write_text(json.dumps({"mean": mean, "n_images": len(self.rows), "per_image": self.rows}, indent=2))
        print(f"mean over {len(self.rows)} images: " + ", ".join(f"{k} {v:.4f}" for k, v in mean.items()))
