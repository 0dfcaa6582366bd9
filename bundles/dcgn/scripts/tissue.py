"""DCGN's tissue mode: the named class map as tissue compartments, a colour-coded map and its legend.

The classes are already named without labels by :func:`scripts.classes.haematoxylin_order` (increasing mean
haematoxylin). With K classes, the first is the least stained (glass, lumen, mucin, and on some tiles pale loose
stroma), the last the haematoxylin-rich compartment (nuclei; in glands, the epithelium), and those between are
eosin-rich (stroma, cytoplasm, red cells) in increasing haematoxylin. The classes are found per tile, so "least
stained" is relative to the tile. The legend says which colour is which class, for every image of a run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from labelfree.core.imageio import save_text
from labelfree.transforms.io import tensor_to_rgb

__all__ = ["tissue_legend", "write_legend", "TissueMapd", "LEGEND_FILE"]

LEGEND_FILE = "tissue_legend.json"

_GLASS, _HAEMATOXYLIN = (236, 236, 236), (72, 38, 150)
_EOSIN = ((232, 120, 170), (190, 70, 120), (245, 175, 200))


def tissue_legend(n_classes: int) -> list[dict]:
    """One entry per named class: ``{"class": j, "name": ..., "colour": [r, g, b]}``.

    Args:
        n_classes: K ≥ 2.
    """
    if n_classes < 2:
        raise ValueError(f"the tissue map needs at least 2 classes, got {n_classes}")
    middle = n_classes - 2
    legend = [{"class": 0, "name": "least stained: glass, lumen, mucin, pale stroma", "colour": list(_GLASS)}]
    for j in range(middle):
        name = "eosin-rich: stroma, cytoplasm, red cells" + (f" ({j + 1} of {middle})" if middle > 1 else "")
        legend.append({"class": j + 1, "name": name, "colour": list(_EOSIN[j % len(_EOSIN)])})
    last = "haematoxylin-rich: nuclei, epithelium" if n_classes > 2 else "stained tissue"
    legend.append({"class": n_classes - 1, "name": last, "colour": list(_HAEMATOXYLIN)})
    return legend


def write_legend(output_dir: str | os.PathLike, n_classes: int) -> Path:
    """Write ``tissue_legend.json`` (the classes of every ``<stem>_seg.png`` and the colours of ``<stem>_tissue.png``)
    into ``output_dir``, atomically."""
    path = Path(output_dir) / LEGEND_FILE
    save_text(path, json.dumps({"classes": tissue_legend(n_classes)}, indent=2) + "\n")
    return path


class TissueMapd:
    """Post-processing after ``NameClassesd``: writes ``tissue`` ``(H, W, 3)`` uint8, the colour-coded class map, and
    ``tissue_overlay``, that map blended over the tile; adds the legend to ``class_metadata``.

    Args:
        seg_key: the named class map ``(1, H, W)`` (class indices; 0/255 when K = 2).
        image_key: the tile.
        n_classes: K.
        alpha: weight of the colours in the overlay.
    """

    def __init__(self, seg_key: str = "seg", image_key: str = "image", n_classes: int = 3, alpha: float = 0.45):
        self.seg_key, self.image_key, self.alpha = seg_key, image_key, alpha
        self.legend = tissue_legend(n_classes)
        self.n_classes = n_classes

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        seg = np.squeeze(np.asarray(d[self.seg_key])).astype(np.int64)
        classes = seg // 255 if self.n_classes == 2 else seg
        palette = np.array([entry["colour"] for entry in self.legend], np.uint8)
        colour = palette[np.clip(classes, 0, self.n_classes - 1)]
        rgb = tensor_to_rgb(d[self.image_key])
        blend = (1 - self.alpha) * rgb.astype(np.float32) + self.alpha * colour.astype(np.float32)
        d["tissue"], d["tissue_overlay"] = colour, np.clip(np.rint(blend), 0, 255).astype(np.uint8)
        meta = dict(d.get("class_metadata") or {})
        meta["dcgn_tissue_legend"] = json.dumps(self.legend)
        d["class_metadata"] = meta
        return d
