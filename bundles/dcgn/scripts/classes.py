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

from labelfree.core.gaussian_mixture import mixture_posterior
from labelfree.transforms.instances import drop_small_objects, drop_uncertain_objects, instances_from_map
from labelfree.transforms.io import tensor_to_rgb
from labelfree.transforms.stain import NO_TISSUE_NOTE, has_tissue, tissue_mask

__all__ = ["RULE", "haematoxylin_order", "reorder_classes", "tile_mixture_posterior", "NameClassesd"]

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


def tile_mixture_posterior(prob: np.ndarray, features: np.ndarray | torch.Tensor) -> np.ndarray:
    """The posterior of the mixture that the network's softmax defines on this tile's own features.

    The softmax ``prob`` is read as DCGN reads it in training, as responsibilities: the mixture's weights, means and
    covariances follow in closed form over the tile's pixels (``labelfree.core.gaussian_mixture``), and each pixel
    gets that mixture's Bayes posterior. One EM step from the network's answer: the components stay the network's,
    fitted to this tile's colours.

    Args:
        prob: ``(K, H, W)`` softmax.
        features: ``(C, H, W)`` the features the mixture was trained on (``labelfree.transforms.mixture_features``).

    Returns:
        ``(K, H, W)`` float32 posterior.
    """
    k, h, w = prob.shape
    if features.ndim != 3 or tuple(features.shape[1:]) != (h, w):
        raise ValueError(f"features of shape {tuple(features.shape)} do not match the softmax's {h} x {w} pixels")
    x = torch.as_tensor(features).detach().cpu().to(torch.float64).reshape(-1, h * w)
    gamma = torch.from_numpy(np.asarray(prob, dtype=np.float64)).reshape(k, -1)
    return mixture_posterior(x, gamma).reshape(k, h, w).to(torch.float32).numpy()


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
        class_posterior: ``"network"``: the classes are the network's softmax (0.3.x); ``"mixture"``: the Bayes posterior of
            the mixture that softmax defines on the tile's own features (:func:`tile_mixture_posterior`), which then
            gives the class map and the instances alike.
        features_key: the ``(C, H, W)`` mixture features of the tile (``class_posterior="mixture"`` only).
        min_mean_softmax: nuclei objects whose mean network softmax for the nuclei class (the softmax itself, before
            the mixture step) is below this are dropped, before ``min_rel_area``; 0 keeps every object. The mixture
            posterior is near-binary and gives a rim or a stained fibre the network barely calls nuclei the same
            certainty as a nucleus; the softmax does not (SSimNet's ``min_mean_prob`` rule, 0.5 by default since 0.6.0).
        instance_kwargs: passed to ``labelfree.transforms.instances.instances_from_map``.
    """

    def __init__(
        self,
        pred_key: str = "pred",
        image_key: str = "image",
        nuclei_class: int | None = None,
        glass_is_background: bool = False,
        instances_from: str = "class",
        class_posterior: str = "network",
        features_key: str = "features",
        min_mean_softmax: float = 0.0,
        **instance_kwargs,
    ):
        if instances_from not in ("class", "posterior"):
            raise ValueError(f"instances_from must be 'class' or 'posterior', got {instances_from!r}")
        if class_posterior not in ("network", "mixture"):
            raise ValueError(f"class_posterior must be 'network' or 'mixture', got {class_posterior!r}")
        self.class_posterior, self.features_key = class_posterior, features_key
        self.pred_key, self.image_key, self.nuclei_class = pred_key, image_key, nuclei_class
        self.glass_is_background, self.instances_from = glass_is_background, instances_from
        self.min_mean_softmax = float(min_mean_softmax)
        self.instance_kwargs = instance_kwargs

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        rgb = tensor_to_rgb(d[self.image_key])
        prob_t = torch.as_tensor(d[self.pred_key]).detach().float().cpu()
        if tuple(prob_t.shape[1:]) != rgb.shape[:2]:
            # the network saw a resized image; bring the probabilities back to the tile's own size
            prob_t = F.interpolate(prob_t[None], size=rgb.shape[:2], mode="bilinear", align_corners=False)[0]
        prob = softmax = prob_t.numpy()
        tissue = has_tissue(rgb)
        if self.class_posterior == "mixture" and tissue:  # a blank tile's result is empty whatever its classes
            if self.features_key not in d:
                raise KeyError(
                    f"class_posterior='mixture' needs the tile's mixture features under {self.features_key!r}"
                )
            prob = tile_mixture_posterior(prob, d[self.features_key])
        k = prob.shape[0]
        raw = prob.argmax(axis=0)
        order = haematoxylin_order(raw, rgb, k)
        named = reorder_classes(raw, order)
        nuclei = k - 1 if self.nuclei_class is None else self.nuclei_class
        if self.glass_is_background:
            named = np.where(tissue_mask(rgb), named, 0)
        if not tissue:
            named = np.zeros_like(named)
            inst = np.zeros(named.shape, np.int32)
            d["note"] = NO_TISSUE_NOTE
        else:
            inst = self._instances(prob, softmax, named, order, nuclei, rgb)
        seg = (named * (255 if k == 2 else 1)).astype(np.uint8)
        d["seg"], d["inst"] = seg[None], inst[None]
        d["class_metadata"] = {
            "dcgn_class_rule": RULE,
            "dcgn_raw_class_of_named_class": json.dumps(order.tolist()),
            "dcgn_nuclei_class": str(nuclei),
            "dcgn_num_classes": str(k),
            "dcgn_class_posterior": self.class_posterior,
        }
        return d

    def _instances(
        self,
        prob: np.ndarray,
        softmax: np.ndarray,
        named: np.ndarray,
        order: np.ndarray,
        nuclei: int,
        rgb: np.ndarray,
    ) -> np.ndarray:
        """``(H, W)`` int32 nuclei instances of a tile with tissue: split, then the half-seen and small objects dropped.

        ``prob`` is the ``(K, H, W)`` posterior the classes were named from, ``softmax`` the network's own.
        """
        kwargs = dict(self.instance_kwargs)
        # the small-object rule compares with the tile's median object, so it runs after the half-seen are gone
        min_rel_area = kwargs.pop("min_rel_area", 0.0) if self.min_mean_softmax > 0 else 0.0
        if self.instances_from == "posterior":
            posterior = prob[order[nuclei]]
            if self.glass_is_background:
                posterior = np.where(tissue_mask(rgb), posterior, 0.0)
            inst = instances_from_map(posterior, threshold=0.5, **kwargs)
        else:
            inst = instances_from_map(named == nuclei, **kwargs)
        if self.min_mean_softmax > 0:
            # threshold -inf: every pixel counts at its own softmax (no pixel of the objects is a hole of this map)
            inst = drop_uncertain_objects(inst, softmax[order[nuclei]], -np.inf, self.min_mean_softmax)
            if min_rel_area > 0:
                inst = drop_small_objects(inst, min_rel_area)
        return inst
