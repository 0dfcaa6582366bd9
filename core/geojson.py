"""Streamed, resumable, atomic output files: GeoJSON feature collections (QuPath detections) and CSV tables.

A slide can hold millions of nuclei; writers that build the whole ``FeatureCollection`` in memory are how other tools
run out of it. Here every feature goes to disk as it is made, into ``<name>.part`` next to the output; the final name
appears only when the run closes the file (rename), so a reader never sees half a collection. A killed run can
continue: :meth:`AppendStream.checkpoint` returns the byte offset and count reached, and a new stream opened with that
state truncates whatever was appended after it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["AppendStream", "FeatureStream", "CsvStream", "detection_feature"]


class AppendStream:
    """An append-only text file written to ``<path>.part`` and renamed onto ``path`` by :meth:`close`.

    Args:
        path: the final file.
        header: text written first (ignored on resume: it is already there).
        footer: text written by :meth:`close`.
        resume: a :meth:`checkpoint` of an earlier stream of the same file; ``None`` starts afresh.
    """

    separator = ""

    def __init__(self, path: str | os.PathLike, header: str = "", footer: str = "", resume: dict | None = None):
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        self.footer = footer
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.resumable(self.path, resume):
            self._fh = open(self.part, "r+b")
            self._fh.truncate(int(resume["offset"]))  # drop what was appended after the last checkpoint
            self._fh.seek(int(resume["offset"]))
            self.count = int(resume["count"])
        else:
            self._fh = open(self.part, "wb")
            self._fh.write(header.encode("utf-8"))
            self.count = 0

    @staticmethod
    def resumable(path: str | os.PathLike, state: dict | None) -> bool:
        """Whether ``<path>.part`` still holds everything up to the checkpoint ``state``."""
        part = Path(path).with_name(Path(path).name + ".part")
        return state is not None and part.is_file() and part.stat().st_size >= int(state["offset"])

    def write(self, text: str) -> None:
        """Append one record (the stream adds its separator between records)."""
        sep = self.separator if self.count else ""
        self._fh.write((sep + text).encode("utf-8"))
        self.count += 1

    def checkpoint(self) -> dict[str, int]:
        """Flush to disk and return ``{"offset", "count"}``, the state to resume from."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        return {"offset": self._fh.tell(), "count": self.count}

    def close(self) -> Path:
        """Write the footer, flush, and rename the part file onto the final path. Returns the final path."""
        self._fh.write(self.footer.encode("utf-8"))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.part, self.path)
        return self.path

    def abandon(self) -> None:
        """Close without finishing: the part file stays for a later resume."""
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()


class FeatureStream(AppendStream):
    """A GeoJSON ``FeatureCollection`` streamed one ``Feature`` per line.

    Args:
        path: the ``.geojson`` file.
        resume: see :class:`AppendStream`.
    """

    separator = ",\n"

    def __init__(self, path: str | os.PathLike, resume: dict | None = None):
        super().__init__(path, header='{"type": "FeatureCollection", "features": [\n', footer="\n]}\n", resume=resume)

    def add(self, feature: dict[str, Any]) -> None:
        self.write(json.dumps(feature, separators=(",", ":"), ensure_ascii=False))


class CsvStream(AppendStream):
    """A CSV table streamed one row per record, with a header row.

    Args:
        path: the ``.csv`` file.
        columns: the column names.
        resume: see :class:`AppendStream`.
    """

    separator = ""

    def __init__(self, path: str | os.PathLike, columns: list[str], resume: dict | None = None):
        self.columns = list(columns)
        super().__init__(path, header=",".join(self.columns) + "\n", resume=resume)

    def add(self, row: dict[str, Any]) -> None:
        self.write(",".join(_csv_cell(row[c]) for c in self.columns) + "\n")


def _csv_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def detection_feature(
    polygon: np.ndarray,
    name: str,
    color: tuple[int, int, int],
    measurements: dict[str, float],
    feature_id: str | None = None,
) -> dict[str, Any]:
    """One QuPath detection as a GeoJSON ``Feature``.

    Args:
        polygon: ``(N, 2)`` outline as ``(x, y)`` in level-0 slide pixels (pixel edges: pixel ``(0, 0)`` covers
            ``[0, 1)²``, QuPath's convention); it is closed here if open.
        name: the classification name (``"Nucleus"``).
        color: its RGB display colour.
        measurements: QuPath measurements (name → number), e.g. ``"Area µm^2"``.
        feature_id: a stable id (QuPath reads it as the object's UUID).

    Returns:
        the feature as a dict (``objectType: "detection"``, ``classification``, ``measurements``).
    """
    ring = np.asarray(polygon, dtype=np.float64).round(2)
    if len(ring) and not np.array_equal(ring[0], ring[-1]):
        ring = np.vstack([ring, ring[:1]])
    feature: dict[str, Any] = {"type": "Feature"}
    if feature_id is not None:
        feature["id"] = feature_id
    feature["geometry"] = {"type": "Polygon", "coordinates": [ring.tolist()]}
    feature["properties"] = {
        "objectType": "detection",
        "classification": {"name": name, "color": [int(c) for c in color]},
        "measurements": {k: round(float(v), 4) for k, v in measurements.items()},
    }
    return feature
