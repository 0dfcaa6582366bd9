import threading

import pytest
import torch

from labelfree.core.parallel import side_by_side


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_results_come_back_in_order_from_threads_when_two_are_allowed(torch_threads):
    torch_threads(2)
    names = side_by_side(lambda: ("a", threading.current_thread().name), lambda: ("b", threading.current_thread().name))
    assert [n for n, _ in names] == ["a", "b"]
    assert all(t.startswith("side-by-side") for _, t in names)


def test_one_thread_allowed_runs_the_steps_in_turn_in_the_caller(torch_threads):
    torch_threads(1)
    here = threading.current_thread().name
    assert side_by_side(lambda: threading.current_thread().name, lambda: 2) == [here, 2]


def test_a_failing_step_raises(torch_threads):
    torch_threads(2)

    def fail():
        raise ValueError("bad tile")

    with pytest.raises(ValueError, match="bad tile"):
        side_by_side(lambda: 1, fail)


def test_cpu_threads_cap_torch_and_numpy_blas_alike(torch_threads):
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    from labelfree.core.parallel import set_cpu_threads

    np.ones((2, 2)) @ np.ones((2, 2))  # numpy's BLAS is loaded
    with threadpool_limits():  # restores the BLAS threads afterwards
        set_cpu_threads(1)
        blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert torch.get_num_threads() == 1 and blas and all(n == 1 for n in blas)
        set_cpu_threads(2)
        set_cpu_threads(0)  # never below one
        assert torch.get_num_threads() == 1
