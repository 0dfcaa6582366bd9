"""The two files every benchmark leaves behind: its record as JSON and its table as Markdown, printed as well."""

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
