"""The harness's per-tile ``results.csv``: one place that writes it and one that reads it back.

Every benchmark that tabulates harness runs (arm tables, groups by magnification, perturbations, held-out folds)
reads the same file, so the column names and the choice of row when a tile appears more than once live here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from bench.harness.tables import METRICS, ORACLE_METRICS
from labelfree.core.imageio import save_text

__all__ = ["CSV_COLUMNS", "write_results_csv", "read_results_csv", "read_one_method"]

CSV_COLUMNS = ("method", "seed", "image", *METRICS, "seconds", *ORACLE_METRICS, "oracle_class")


def write_results_csv(rows: list[dict], path: Path) -> None:
    """Atomically write per-tile rows as the harness's ``results.csv`` (:data:`CSV_COLUMNS`; missing fields empty)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    save_text(path, buf.getvalue())


def read_results_csv(
    path: str | Path, metrics: Iterable[str] = METRICS, seed: int | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """Per-tile scores of a ``results.csv``, by method.

    Args:
        path: the file (as :func:`write_results_csv` writes it, or any CSV with ``method``, ``seed`` and ``image``).
        metrics: the columns to read, as floats.
        seed: only that seed's rows; ``None`` keeps each tile's first row per method, which is its first seed in the
            harness's order.

    Returns:
        ``method → tile name → metric → value``, methods and tiles in the file's order.
    """
    names = tuple(metrics)
    found: dict[str, dict[str, dict[str, float]]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if seed is not None and int(row["seed"]) != seed:
                continue
            tiles = found.setdefault(row["method"], {})
            if row["image"] not in tiles:
                tiles[row["image"]] = {k: float(row[k]) for k in names}
    return found


def read_one_method(path: str | Path, metrics: Iterable[str] = METRICS) -> dict[str, dict[str, float]]:
    """``tile name → metric → value`` of a ``results.csv`` that holds one method's run (an arm's seed folder).

    Raises:
        ValueError: the file holds the rows of no method or of several.
    """
    by_method = read_results_csv(path, metrics)
    if len(by_method) != 1:
        raise ValueError(f"{path} should hold one method's rows, found {sorted(by_method) or 'none'}")
    return next(iter(by_method.values()))
