"""The paired test every benchmark table uses to compare two sets of per-tile scores."""

from __future__ import annotations

import numpy as np
from scipy.stats import wilcoxon


def signed_rank_p(x: np.typing.ArrayLike, y: np.typing.ArrayLike) -> float:
    """Two-sided Wilcoxon signed-rank p of the paired scores ``x`` against ``y`` (one value per tile); 1 where the two
    are equal on every tile, for which the test is undefined."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(wilcoxon(x, y).pvalue) if np.any(x != y) else 1.0
