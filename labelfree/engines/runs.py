"""Folder runs that survive bad input: one clear line per failed tile, the other tiles processed, a report at the end.

What the bundles' inference configs and the command line share:

* :func:`install_error_handling` (first thing a run does): user mistakes print as one line instead of a traceback
  (``--debug True`` or ``LABELFREE_DEBUG=1`` shows it), and SIGTERM unwinds like Ctrl-C so that no temporary file
  is left behind.
* :func:`check_output_dir`, :func:`check_checkpoint`: problems with the output folder or the weights are found before
  any work starts.
* :func:`image_datalist`: the tiles of a folder (or one file), optionally without those whose outputs are complete
  (``skip_existing`` resumes an interrupted run).
* :class:`GuardedDataset` and :class:`FaultTolerantEvaluator`: a tile that cannot be read, or fails anywhere in
  inference, post-processing or writing, is reported in one line and the run goes on with the next.
* :func:`report_run` (:func:`finish_run` for an evaluator): prints what was written, writes ``failures.csv`` and
  exits with status 1 when a tile failed. The command line reports through the same function.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import Dataset
from monai.engines import SupervisedEvaluator

from labelfree.core.imageio import InvalidImageError, find_label, list_images, save_text
from labelfree.core.writer import output_paths

__all__ = [
    "ERROR_KEY",
    "FAILURES_FILE",
    "RunError",
    "user_error",
    "install_error_handling",
    "check_output_dir",
    "check_checkpoint",
    "image_datalist",
    "outputs_complete",
    "readable_images",
    "describe_failure",
    "GuardedDataset",
    "FaultTolerantEvaluator",
    "TileProgress",
    "write_failures",
    "report_run",
    "finish_run",
]

log = logging.getLogger(__name__)

#: key of a data item that could not be prepared; its value is the one-line reason
ERROR_KEY = "error"
#: the per-run report of failed inputs, in the output folder
FAILURES_FILE = "failures.csv"


class RunError(Exception):
    """A problem with how a run was set up (input folder, output folder, checkpoint); the message says what to do."""


#: exception types whose message is all a user needs (set-up mistakes, bad paths, unreadable images)
USER_ERRORS = (RunError, InvalidImageError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def user_error(exc: BaseException) -> BaseException | None:
    """The first exception in ``exc``'s chain (``__cause__`` / ``__context__``) that is a user mistake, else None.

    MONAI's config parser wraps every failure in ``RuntimeError("Failed to evaluate ...")``; the reason is below it.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, USER_ERRORS):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _debug_enabled(debug: bool) -> bool:
    return bool(debug) or os.environ.get("LABELFREE_DEBUG", "") not in ("", "0")


def install_error_handling(debug: bool = False) -> None:
    """Make this process print user mistakes as one line and clean up on SIGTERM.

    * ``sys.excepthook``: an uncaught exception whose chain holds a :class:`RunError`, an ``InvalidImageError`` or a
      missing/unwritable path prints ``error: <message>`` and a hint; anything else (a bug) keeps its traceback.
    * SIGTERM (what ``timeout`` and job schedulers send) raises ``SystemExit(143)`` in the main thread, so ``finally``
      blocks run and atomic writers remove their temporaries, exactly as on Ctrl-C.

    Args:
        debug: always print full tracebacks (also set by the environment variable ``LABELFREE_DEBUG=1``).
    """
    previous = sys.excepthook
    show_tracebacks = _debug_enabled(debug)

    def hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        if issubclass(exc_type, KeyboardInterrupt) and not show_tracebacks:
            print("interrupted: no partial output was left behind", file=sys.stderr)
            return
        cause = None if show_tracebacks else user_error(exc)
        if cause is None:
            previous(exc_type, exc, tb)
            return
        print(f"error: {_one_line(cause)}", file=sys.stderr)
        print("(for the traceback, run again with --debug True or LABELFREE_DEBUG=1)", file=sys.stderr)

    sys.excepthook = hook
    install_signal_cleanup()


def install_signal_cleanup() -> None:
    """SIGTERM → ``SystemExit(143)``, so interrupted writes clean up as they do on Ctrl-C (main thread only)."""

    def _terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (a server's worker): the host owns signal handling
        pass


def check_output_dir(path: str | os.PathLike) -> str:
    """Create ``path`` if needed and prove it is writable, before any work starts.

    Returns:
        the path as a string.

    Raises:
        RunError: a file is in the way, or the folder cannot be written.
    """
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=p)
        os.close(fd)
        os.unlink(probe)
    except (FileExistsError, NotADirectoryError) as exc:
        raise RunError(
            f"output folder {p}: a file is in the way ({exc.filename}); choose another --output_dir"
        ) from exc
    except PermissionError as exc:
        raise RunError(f"output folder {p} is not writable; choose another --output_dir") from exc
    except OSError as exc:
        raise RunError(f"output folder {p} cannot be used ({exc.strerror}); choose another --output_dir") from exc
    return str(path)


def check_checkpoint(path: str | os.PathLike, hint: str = "") -> str:
    """Fail early, in one line, when a checkpoint is missing or cannot be read (truncated download, wrong file).

    Args:
        path: the ``.pt`` file.
        hint: what to do instead, appended to the message.

    Returns:
        the path as a string.

    Raises:
        RunError: missing or unreadable.
    """
    p = Path(path)
    tail = f"; {hint}" if hint else ""
    if not p.is_file():
        raise RunError(f"checkpoint not found: {p}{tail}")
    try:
        torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunError(f"checkpoint {p} cannot be read ({_one_line(exc)}): it may be truncated{tail}") from exc
    return str(path)


def outputs_complete(output_dir: str | os.PathLike, stem: str) -> bool:
    """Whether all three outputs of ``stem`` exist (``labelfree.core.writer`` renames ``_inst.tif`` last)."""
    return all(p.is_file() for p in output_paths(output_dir, stem).values())


def image_datalist(
    dataset_dir: str | os.PathLike | None,
    output_dir: str | os.PathLike | None = None,
    skip_existing: bool = False,
    default_dir: str | os.PathLike | None = None,
    labels_dir: str | os.PathLike | None = None,
) -> list[dict[str, str]]:
    """``[{"image": path}]`` for every tile of ``dataset_dir`` (a folder, or a single image file).

    Args:
        dataset_dir: folder of png/tif/jpg tiles (hidden files are ignored) or one image file.
        output_dir: where the outputs go; with ``skip_existing``, tiles whose three outputs are all there are left out.
        skip_existing: resume an interrupted run instead of redoing finished tiles.
        default_dir: the configured default input; running on it prints a note, so a forgotten ``--dataset_dir``
            is not mistaken for the user's data.
        labels_dir: adds ``"label"``, the tile's label map (``labelfree.core.imageio.find_label``), for evaluation; a tile
            without one gets the path it should have, so it fails alone, with that path in its message.

    Raises:
        RunError: the folder does not exist or holds no image.
    """
    if dataset_dir is None or str(dataset_dir) == "":
        raise RunError("no input: pass --dataset_dir FOLDER (a folder of H&E tiles, or one image file)")
    src = Path(dataset_dir)
    if src.is_file():
        files = [src]
    elif src.is_dir():
        try:
            files = list_images(src)
        except ValueError as exc:
            raise RunError(f"{exc}; pass --dataset_dir FOLDER of H&E tiles") from exc
    else:
        raise RunError(f"--dataset_dir {src} does not exist; pass a folder of H&E tiles (png, tif, jpg)")
    if default_dir is not None and src.resolve() == Path(default_dir).resolve():
        print(f"no --dataset_dir given: running on the embedded sample in {src}")
    if skip_existing and output_dir is not None:
        todo = [f for f in files if not outputs_complete(output_dir, f.stem)]
        if len(todo) < len(files):
            print(f"skip_existing: {len(files) - len(todo)} of {len(files)} tiles already done in {output_dir}")
        files = todo
    items = [{"image": str(f)} for f in files]
    if labels_dir is not None:
        for item, f in zip(items, files):
            try:
                item["label"] = str(find_label(labels_dir, f))
            except FileNotFoundError:
                item["label"] = str(Path(labels_dir) / f.name)
    return items


def readable_images(items: Sequence[Mapping[str, str]], key: str = "image") -> list[Mapping[str, str]]:
    """The items whose image passes validation (``labelfree.core.imageio.load_rgb``); every other one is reported in one
    line and left out. For training, which reads each image every epoch and must not stop at the first bad one.

    Raises:
        RunError: no image is usable.
    """
    from labelfree.core.imageio import load_rgb

    kept = []
    for item in items:
        try:
            load_rgb(item[key])
            kept.append(item)
        except (InvalidImageError, OSError) as exc:
            print(f"left out: {item[key]}: {describe_failure(exc, str(item[key]))}", file=sys.stderr)
    if not kept:
        raise RunError(f"none of the {len(items)} images can be used (see the lines above)")
    return kept


def describe_failure(exc: BaseException, source: str) -> str:
    """The reason an input failed, in one line and without the file name (which image errors start with). MONAI
    wraps a transform's error in ``RuntimeError("applying transform ...")``: the user's error below it is described;
    an unexpected error keeps its type name."""
    exc = user_error(exc) or exc
    msg = _one_line(exc)
    if msg.startswith(f"{source}: "):
        msg = msg[len(source) + 2 :]
    return msg if isinstance(exc, USER_ERRORS) else f"{type(exc).__name__}: {msg}"


class GuardedDataset(Dataset):
    """A MONAI ``Dataset`` whose items that fail to load or transform come back as
    ``{"image": <source>, ERROR_KEY: <one-line reason>}`` instead of raising, so a data loader never stops a run.

    Args:
        data: items such as ``{"image": path}``.
        transform: the preprocessing.
        source_key: key of the item's source (its file path), named in the reason.
    """

    def __init__(self, data: Sequence, transform: Callable | None = None, source_key: str = "image") -> None:
        super().__init__(data=data, transform=transform)
        self.source_key = source_key

    def _transform(self, index: int) -> Any:
        try:
            return super()._transform(index)
        except Exception as exc:
            item = self.data[index]
            source = str(item.get(self.source_key, index)) if isinstance(item, Mapping) else str(item)
            log.debug("failed to prepare %s", source, exc_info=True)
            return {self.source_key: source, ERROR_KEY: describe_failure(exc, source)}


def _sources(batch: Any, key: str) -> list[str]:
    """The file names of a collated batch (from a MetaTensor's meta, or the strings of failed items)."""
    value = batch.get(key) if isinstance(batch, Mapping) else None
    meta = getattr(value, "meta", None)
    if meta and meta.get("filename_or_obj") is not None:
        names = meta["filename_or_obj"]
        return [str(n) for n in (names if isinstance(names, (list, tuple)) else [names])]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return [str(value)] if isinstance(value, str) else ["<unnamed input>"]


class FaultTolerantEvaluator(SupervisedEvaluator):
    """MONAI's ``SupervisedEvaluator`` with each batch isolated: a failed item (from :class:`GuardedDataset`) or an
    exception in inference, post-processing or writing is recorded in :attr:`failures`, printed as one line, and the
    run goes on with the next batch.

    Post-processing transforms may put a one-line ``note`` in an output item (for example "no H&E tissue: empty
    mask"); it is printed with the file name.

    With ``postprocessing_threads`` > 0, each batch's post-processing (instances, overlays, writing) runs in one of that
    many worker threads while the network runs on the next batch: the watershed, distance transform and PNG encoder
    release the GIL, so on a CPU they overlap with the network and with each other instead of taking turns. At most
    ``postprocessing_threads`` batches wait, so memory does not grow; the run waits for them before it ends. Only for
    runs whose outputs are files: metrics and handlers that read the post-processed output need it in the foreground
    (0, the default).

    Args:
        args, kwargs: as ``SupervisedEvaluator``.
        source_key: the batch key whose meta names the file.
        debug: also log each failure's traceback.
        postprocessing_threads: worker threads that run ``postprocessing`` behind the network (0: in the foreground).

    Attributes:
        failures: ``(file, reason)`` of every failed item, in order.
        n_written: items that went through without error.
    """

    def __init__(
        self,
        *args: Any,
        source_key: str = "image",
        debug: bool = False,
        postprocessing_threads: int = 0,
        **kwargs: Any,
    ) -> None:
        post = kwargs.get("postprocessing")
        background = int(postprocessing_threads) > 0 and post is not None
        if background:
            kwargs["postprocessing"] = None  # run by _iteration instead of MONAI's MODEL_COMPLETED handler
        super().__init__(*args, **kwargs)
        self.source_key, self.debug = source_key, _debug_enabled(debug)
        self.failures: list[tuple[str, str]] = []
        self.n_written = 0
        self._background_post: Callable | None = post if background else None
        self._threads = int(postprocessing_threads)
        self._pool: Any = None
        self._pending: deque = deque()
        self._lock = threading.Lock()  # the worker threads report failures and counts
        if background:
            from ignite.engine import Events

            # before any handler attached later (the progress bar closes, the run reports) the last batch is done
            self.add_event_handler(Events.EPOCH_COMPLETED, self._finish)
            self.add_event_handler(Events.EXCEPTION_RAISED, self._drain_then_raise)

    def _say(self, line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)  # above any progress bar instead of through it

    def _fail(self, source: str, reason: str) -> None:
        with self._lock:
            self.failures.append((source, reason))
            self._say(f"FAILED {source}: {reason}")

    def _failed(self, exc: BaseException, sources: Sequence[str]) -> None:
        if self.debug:
            self._say("".join(traceback.format_exception(exc)))
        for source in sources:
            self._fail(source, describe_failure(exc, source))

    def _written(self, sources: Sequence[str], output: Any) -> None:
        with self._lock:
            self.n_written += len(sources)
        items = output if isinstance(output, list) else [output]
        for source, item in zip(sources, items):
            note = item.get("note") if isinstance(item, Mapping) else None
            if note:
                self._say(f"{Path(source).name}: {note}")

    def _postprocess(self, sources: list[str], batch: Any, output: Any) -> None:
        """The post-processing MONAI would run on MODEL_COMPLETED, here for one decollated batch."""
        from monai.engines.utils import engine_apply_transform

        try:
            if isinstance(batch, list) and isinstance(output, list):
                for i, (b, o) in enumerate(zip(batch, output)):
                    batch[i], output[i] = engine_apply_transform(b, o, self._background_post)
            else:
                batch, output = engine_apply_transform(batch, output, self._background_post)
        except Exception as exc:
            self._failed(exc, sources)
            return
        self._written(sources, output)

    def _drain(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` batches are in the worker threads, oldest first (their failures are recorded by
        :meth:`_postprocess`)."""
        while len(self._pending) > keep:
            self._pending.popleft().result()

    def _finish(self, _engine: Any = None) -> None:
        self._drain()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _drain_then_raise(self, _engine: Any, exc: BaseException) -> None:
        self._finish()
        raise exc

    def _iteration(self, engine: SupervisedEvaluator, batchdata: dict) -> dict:
        sources = _sources(batchdata, self.source_key)
        errors = batchdata.get(ERROR_KEY) if isinstance(batchdata, Mapping) else None
        if errors:
            reasons = errors if isinstance(errors, (list, tuple)) else [errors]
            for source, reason in zip(sources, reasons):
                self._fail(source, str(reason))
            return {}
        try:
            output = super()._iteration(engine, batchdata)
        except Exception as exc:
            self._failed(exc, sources)
            return {}
        if self._background_post is None:
            self._written(sources, output)
            return output
        from concurrent.futures import ThreadPoolExecutor

        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="postprocessing")
        self._drain(keep=self._threads - 1)  # as many batches in flight as threads, no queue behind them
        self._pending.append(self._pool.submit(self._postprocess, sources, engine.state.batch, output))
        return output


class TileProgress:
    """A progress bar over the tiles of a run that advances when a tile is finished (written or failed), not when it
    starts, and names the tile being processed; failure lines print above it.

    Args:
        desc: the bar's label.
        source_key: the batch key whose meta names the file.
    """

    def __init__(self, desc: str = "tiles", source_key: str = "image") -> None:
        self.desc, self.source_key = desc, source_key
        self._bar: Any = None
        self._total, self._done, self._current = 0, 0, ""

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._open)
        engine.add_event_handler(Events.ITERATION_STARTED, self._name)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._advance)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._close)

    def _open(self, engine: Any) -> None:
        from tqdm import tqdm

        # on a terminal a live bar; in a log file (no TTY) one line per finished tile instead of carriage returns
        self._total, self._done, self._current = engine.state.epoch_length, 0, ""
        self._bar = tqdm(total=self._total, desc=self.desc, unit="tile", file=sys.stderr, disable=None)

    def _name(self, engine: Any) -> None:
        names = _sources(engine.state.batch, self.source_key)
        self._current = Path(names[0]).name if names else ""
        if self._bar is not None and not self._bar.disable:
            self._bar.set_postfix_str(self._current, refresh=True)

    def _advance(self, _engine: Any) -> None:
        self._done += 1
        if self._bar is not None and not self._bar.disable:
            self._bar.update(1)
        else:
            print(f"{self.desc} [{self._done}/{self._total}] {self._current}", file=sys.stderr, flush=True)

    def _close(self, _engine: Any) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str("")
            self._bar.close()
            self._bar = None


def write_failures(output_dir: str | os.PathLike, failures: Sequence[tuple[str, str]]) -> Path | None:
    """Write ``failures.csv`` (columns ``file``, ``reason``) atomically, or remove a stale one when nothing failed.

    Returns:
        the report's path, or None when there was nothing to report.
    """
    path = Path(output_dir) / FAILURES_FILE
    if not failures:
        path.unlink(missing_ok=True)
        return None
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["file", "reason"])
    writer.writerows(failures)
    return save_text(path, buf.getvalue())


def report_run(
    output_dir: str | os.PathLike,
    n_written: int,
    failures: Sequence[tuple[str, str]],
    what: str = "outputs",
    exit_on_failure: bool = True,
) -> int:
    """Report the end of a folder run: what was written where, the failures (``failures.csv``), the exit status.

    Args:
        output_dir: the output folder.
        n_written: inputs that went through.
        failures: ``(file, reason)`` of every failed input.
        what: what was written, for the message.
        exit_on_failure: raise ``SystemExit(1)`` when any input failed (a command line's exit status).

    Returns:
        the number of failed inputs.
    """
    report = write_failures(output_dir, failures)
    print(f"{n_written} tile(s): {what} written to {Path(output_dir).resolve()}")
    if failures:
        print(f"{len(failures)} tile(s) failed, listed in {report}:", file=sys.stderr)
        for source, reason in failures:
            print(f"  {source}: {reason}", file=sys.stderr)
        if exit_on_failure:
            raise SystemExit(1)
    return len(failures)


def finish_run(
    evaluator: FaultTolerantEvaluator,
    output_dir: str | os.PathLike,
    what: str = "outputs",
    exit_on_failure: bool = True,
) -> int:
    """:func:`report_run` for a bundle's :class:`FaultTolerantEvaluator` (the last step of ``inference.json``)."""
    return report_run(output_dir, evaluator.n_written, evaluator.failures, what, exit_on_failure)
