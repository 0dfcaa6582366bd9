import os

import numpy as np
import pytest
import torch

from synthetic import synthetic_tile

# The suite's bundle runs are on tiny tiles, where exporting the network to ONNX Runtime (1-3 s per run) is all cost:
# they run on PyTorch, and tests/test_onnx_runtime.py asks for ONNX Runtime explicitly. Subprocesses inherit it.
os.environ["LABELFREE_ONNXRUNTIME"] = "0"


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tile():
    """A 256×256 synthetic H&E tile with exact instances (seeded)."""
    return synthetic_tile(256, n_nuclei=30, touching_pairs=4, seed=1)


@pytest.fixture(scope="session")
def blank():
    """An all-white tile with sensor noise and no tissue."""
    rng = np.random.default_rng(0)
    return np.clip(250 + rng.normal(scale=2, size=(128, 128, 3)), 0, 255).astype(np.uint8)
