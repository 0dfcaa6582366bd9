"""Scoring one method run against instance labels: the label-free prediction, the oracle class pick, class fractions.

Labels are read here and only here, after the method has finished; nothing computed from them flows back into a
method. The oracle pick is the papers' protocol (the class with the best Dice against the ground truth, per image) and
is reported in columns of its own so it is never mistaken for a label-free result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from labelfree.core.imageio import find_label, list_images, load_instance_map
from labelfree.core.metrics import instance_scores, pixel_scores
from labelfree.transforms.instances import instances_from_map

__all__ = ["class_fractions", "read_classes", "score_image", "score_run"]


def read_classes(seg_path: Path, n_classes: int) -> np.ndarray:
    """Class indices ``0..n_classes-1`` from a ``_seg.png`` (0/255 for two classes, else the index)."""
    seg = np.asarray(Image.open(seg_path)).astype(np.int64)
    return (seg > 0).astype(np.int64) if n_classes == 2 else seg


def class_fractions(classes: np.ndarray, n_classes: int) -> list[float]:
    """Share of the image's pixels in each class."""
    counts = np.bincount(classes.ravel(), minlength=n_classes)[:n_classes]
    return (counts / max(classes.size, 1)).tolist()


def score_image(gt: np.ndarray, inst: np.ndarray, classes: np.ndarray, n_classes: int) -> dict:
    """All scores of one image.

    Args:
        gt: ``(H, W)`` ground-truth instance map.
        inst: ``(H, W)`` predicted instances (the method's label-free nuclei).
        classes: ``(H, W)`` the method's class map.
        n_classes: classes in ``classes``.

    Returns:
        the metrics of :func:`labelfree.core.metrics.instance_scores`, ``oracle_class``, ``oracle_dice`` and
        ``oracle_aji`` (instances of the oracle class by the project's watershed) and ``class_fractions``.
    """
    scores = instance_scores(gt, inst)
    fg = gt > 0
    dices = [pixel_scores(fg, classes == c)["dice"] for c in range(n_classes)]
    best = int(np.argmax(dices))
    if best == n_classes - 1:  # the label-free pick was right: same instances
        oracle = scores
    else:
        oracle = instance_scores(gt, instances_from_map(classes == best))
    return {
        **scores,
        "oracle_class": best,
        "oracle_dice": oracle["dice"],
        "oracle_aji": oracle["aji"],
        "class_fractions": class_fractions(classes, n_classes),
    }


def score_run(pred_dir: Path, labels: Path, images: Path, n_classes: int) -> dict[str, dict]:
    """Scores of every image of a run, by image stem.

    Raises:
        FileNotFoundError: a prediction or a label of one of the images is missing.
    """
    out = {}
    for path in list_images(images):
        stem = path.stem
        inst_path, seg_path = pred_dir / f"{stem}_inst.tif", pred_dir / f"{stem}_seg.png"
        for p in (inst_path, seg_path):
            if not p.is_file():
                raise FileNotFoundError(f"missing prediction {p}")
        gt = load_instance_map(find_label(labels, path))
        inst = tifffile.imread(inst_path)
        out[stem] = score_image(gt, inst, read_classes(seg_path, n_classes), n_classes)
    return out
