"""Naming DCGN's classes without labels.

A mixture's components come out in arbitrary order, and the official code picks the nuclei channel per image by its
Dice against the ground truth. Here classes are ordered by the mean haematoxylin optical density of their pixels
(Ruifrok–Johnston colour deconvolution, ``skimage.color.rgb2hed``), lowest first: for K = 2 class 1 is the nuclei, for
K = 3 the classes run background → stroma/cytoplasm → nuclei. The rule needs only the image, so it is the same on every
image and seed; an empty class is placed first (it has no pixels to measure).
"""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F
from skimage.color import rgb2hed

from labelfree.transforms.instances import instances_from_map
from labelfree.transforms.io import tensor_to_rgb
from labelfree.transforms.stain import NO_TISSUE_NOTE, has_tissue, tissue_mask

__all__ = ["RULE", "haematoxylin_order", "reorder_classes", "NameClassesd"]

RULE = "classes sorted by increasing mean haematoxylin optical density (rgb2hed channel 0) of their pixels"


def haematoxylin_order(class_map: np.ndarray, rgb: np.ndarray, n_classes: int) -> np.ndarray:
    """Permutation ``order`` such that ``order[j]`` is the raw class that becomes class ``j``.

    Args:
        class_map: ``(H, W)`` raw argmax classes in ``[0, n_classes)``.
        rgb: ``(H, W, 3)`` uint8 image.
        n_classes: K.
    """
    hema = rgb2hed(rgb)[..., 0]
    cm = np.asarray(class_map).astype(np.int64).ravel()
    sums = np.bincount(cm, weights=hema.ravel(), minlength=n_classes)
    counts = np.bincount(cm, minlength=n_classes)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
    return np.argsort(means, kind="stable")


def reorder_classes(class_map: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Relabel a raw class map with ``order`` from :func:`haematoxylin_order`."""
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return inverse[np.asarray(class_map).astype(np.int64)]


class NameClassesd:
    """Post-processing: softmax ``pred`` → class map named by :func:`haematoxylin_order`, plus nuclei instances.

    Writes ``seg`` ``(1, H, W)`` uint8 (named classes; for K = 2 scaled to 0/255 so the mask is visible), ``inst``
    ``(1, H, W)`` int32 (watershed instances of the nuclei class, the class with the highest haematoxylin) and
    ``class_metadata`` (the rule and the raw index of each named class, stored in ``_seg.png`` by
    ``SaveSegmentationd(text_key="class_metadata")``). Tiles without stained tissue give an empty result.

    Args:
        nuclei_class: named class holding nuclei; ``None`` = the last (highest haematoxylin) class.
        glass_is_background: pixels outside the tissue mask (``labelfree.transforms.stain.tissue_mask``) become class
            0; the setting that goes with a model trained with ``DCGNLoss(tissue_threshold=...)``, which never saw them.
        instances_from: ``"class"``: instances of the pixels whose most likely class is the nuclei class (argmax over
            K); ``"posterior"``: of the pixels whose nuclei posterior is above 0.5 (more likely nuclei than all other
            classes together: the Bayes decision of nuclei against the rest), split on the distance weighted by that
            posterior, as SSimNet splits its probability.
        instance_kwargs: passed to ``labelfree.transforms.instances.instances_from_map``.
    """

    def __init__(
        self,
        pred_key: str = "pred",
        image_key: str = "image",
        nuclei_class: int | None = None,
        glass_is_background: bool = False,
        instances_from: str = "class",
        **instance_kwargs,
    ):
        if instances_from not in ("class", "posterior"):
            raise ValueError(f"instances_from must be 'class' or 'posterior', got {instances_from!r}")
        self.pred_key, self.image_key, self.nuclei_class = pred_key, image_key, nuclei_class
        self.glass_is_background, self.instances_from = glass_is_background, instances_from
        self.instance_kwargs = instance_kwargs

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        rgb = tensor_to_rgb(d[self.image_key])
        prob_t = torch.as_tensor(d[self.pred_key]).detach().float().cpu()
        if tuple(prob_t.shape[1:]) != rgb.shape[:2]:
            # the network saw a resized image; bring the probabilities back to the tile's own size
            prob_t = F.interpolate(prob_t[None], size=rgb.shape[:2], mode="bilinear", align_corners=False)[0]
        prob = prob_t.numpy()
        k = prob.shape[0]
        raw = prob.argmax(axis=0)
        order = haematoxylin_order(raw, rgb, k)
        named = reorder_classes(raw, order)
        nuclei = k - 1 if self.nuclei_class is None else self.nuclei_class
        if self.glass_is_background:
            named = np.where(tissue_mask(rgb), named, 0)
        if not has_tissue(rgb):
            named = np.zeros_like(named)
            inst = np.zeros(named.shape, np.int32)
            d["note"] = NO_TISSUE_NOTE
        elif self.instances_from == "posterior":
            posterior = prob[order[nuclei]]
            if self.glass_is_background:
                posterior = np.where(tissue_mask(rgb), posterior, 0.0)
            inst = instances_from_map(posterior, threshold=0.5, **self.instance_kwargs)
        else:
            inst = instances_from_map(named == nuclei, **self.instance_kwargs)
        seg = (named * (255 if k == 2 else 1)).astype(np.uint8)
        d["seg"], d["inst"] = seg[None], inst[None]
        d["class_metadata"] = {
            "dcgn_class_rule": RULE,
            "dcgn_raw_class_of_named_class": json.dumps(order.tolist()),
            "dcgn_nuclei_class": str(nuclei),
            "dcgn_num_classes": str(k),
        }
        return d
