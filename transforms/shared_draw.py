"""Dictionary twins of random array transforms that give every key the same random draw.

MONAI's random dictionary transforms draw once per call and apply that draw to all their keys (an image and its
companions move together). :class:`SharedDrawd` does this for any array transform whose ``__call__`` accepts
``randomize=False``, so each colour augmentation writes only its array transform and a constructor.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends

__all__ = ["SharedDrawd"]


class SharedDrawd(RandomizableTransform, MapTransform):
    """Apply ``op`` with probability ``prob`` to every key, with one draw of ``op``'s parameters per call.

    Args:
        keys: keys of the ``(C, H, W)`` images to transform.
        op: the array transform (applied with probability 1 once this transform decides to act); its ``__call__``
            must take ``randomize=False`` and its ``randomize()`` must draw its parameters.
        prob: probability of transforming the dictionary.
        allow_missing_keys: as in MONAI.
    """

    #: what the colour augmentations built on it accept; a subclass states its own ``op``'s backend
    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, keys: KeysCollection, op: RandomizableTransform, prob: float, allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.op = op

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.op.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        self.op.randomize()
        for key in self.key_iterator(d):
            d[key] = self.op(d[key], randomize=False)
        return d
