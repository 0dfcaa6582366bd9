"""SSimNet bundle code: pseudo-label patch data, the SSimNet loss and test-time fine-tuning.

The generic pieces (transforms, metrics, writers, handlers) come from the ``labelfree`` package.
"""

from . import data, finetune, loss, self_training

__all__ = ["data", "finetune", "loss", "self_training"]
