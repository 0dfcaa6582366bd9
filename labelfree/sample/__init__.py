"""The embedded sample: three 512×512 crops of MoNuSeg training tiles with their instance labels.

Licence CC BY-NC-SA 4.0 (MoNuSeg, Kumar et al.); see ``ATTRIBUTION.md`` in this folder.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["sample_dir", "sample_pairs"]


def sample_dir() -> Path:
    """Folder holding ``images/``, ``labels/`` and ``ATTRIBUTION.md``."""
    return Path(__file__).resolve().parent


def sample_pairs() -> list[tuple[Path, Path]]:
    """``(image, instance label)`` path pairs of the sample, sorted by name."""
    root = sample_dir()
    return [(p, root / "labels" / p.name) for p in sorted((root / "images").glob("*.png"))]
