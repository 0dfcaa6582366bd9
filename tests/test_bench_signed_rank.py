import numpy as np
import pytest
from scipy.stats import wilcoxon

from bench.signed_rank import signed_rank_p


def test_equal_scores_give_one_and_different_ones_scipys_p():
    a = [0.5, 0.6, 0.7, 0.8]
    assert signed_rank_p(a, a) == 1.0  # wilcoxon itself is undefined on all-zero differences
    b = [0.55, 0.62, 0.69, 0.9]
    assert signed_rank_p(b, a) == pytest.approx(wilcoxon(np.array(b), np.array(a)).pvalue)
    assert 0 < signed_rank_p(b, a) < 1
