"""The files every benchmark leaves behind: its record as JSON and its table as Markdown, printed as well."""

from __future__ import annotations

import json
from pathlib import Path

from labelfree.core.imageio import save_text


def save_report(out: str | Path, stem: str, result: dict, markdown: str, indent: int = 2) -> None:
    """Write ``<out>/<stem>.json`` (``result``) and ``<out>/<stem>.md`` (``markdown``), each atomically (the folder is
    made if missing), and print the Markdown."""
    out = Path(out)
    save_text(out / f"{stem}.json", json.dumps(result, indent=indent) + "\n")
    save_text(out / f"{stem}.md", markdown)
    print(markdown)


def print_and_save(markdown: str, out: str | Path | None = None) -> str:
    """Print a benchmark's Markdown and, when ``out`` is given, write it there atomically (the folder is made if
    missing); for checks whose whole result is their table."""
    print(markdown, end="")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        save_text(out, markdown)
    return markdown
