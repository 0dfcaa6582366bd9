"""Scoring as a post-processing step: instance maps against label maps, every metric of
``labelfree.core.metrics`` per image (what ``evaluate.json`` collects with ``labelfree.engines.handlers.EvaluationReport``).
Labels are read only here, to measure."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import TransformBackends

from labelfree.core.metrics import instance_scores
from labelfree.transforms.io import source_name

__all__ = ["InstanceScoresd"]


class InstanceScoresd(MapTransform):
    """Score the instance map in ``keys`` against ``label_key``; writes a dict of every metric to ``scores_key``."""

    backend = [TransformBackends.NUMPY]

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str = "label",
        scores_key: str = "scores",
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.label_key, self.scores_key = label_key, scores_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = np.asarray(torch.as_tensor(d[key]).cpu())
            gt = np.asarray(torch.as_tensor(d[self.label_key]).cpu())
            d[self.scores_key] = {"image": Path(source_name(d["image"])).stem, **instance_scores(gt, pred)}
        return d
