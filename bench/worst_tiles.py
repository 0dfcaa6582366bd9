"""Figure: the tiles a model did worst on, before and after a change, as error overlays side by side.

The tiles are ranked by the AJI of ``--before`` (labels are read only to rank and to draw the errors); each row shows
one tile, one column per prediction folder: true positives green, false positives yellow, false negatives red.

    python -m bench.worst_tiles --images ../shared/data/monuseg/train/images \
        --labels ../shared/data/monuseg/train/labels --before OLD_PRED --after NEW_PRED --out bench/results/worst.png
"""

from __future__ import annotations

from pathlib import Path

import fire

from bench.harness.figures import overlay_grid
from labelfree.core.imageio import find_label, list_images, load_instance_map
from labelfree.core.metrics import instance_scores


def run(images: str, labels: str, before: str, after: str, out: str, n: int = 5) -> list[str]:
    """Rank the tiles by ``before``'s AJI, draw the ``n`` worst, print and return their names with both AJIs."""
    scored = []
    for tile in list_images(images):
        gt = load_instance_map(find_label(Path(labels), tile))
        a = [instance_scores(gt, load_instance_map(Path(d) / f"{tile.stem}_inst.tif"))["aji"] for d in (before, after)]
        scored.append((a[0], a[1], tile))
    worst = sorted(scored, key=lambda s: s[0])[:n]
    overlay_grid([t for _, _, t in worst], Path(labels), {"before": Path(before), "after": Path(after)}, Path(out))
    lines = [f"{t.name}: AJI {b:.3f} -> {a:.3f}" for b, a, t in worst]
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    fire.Fire(run)
