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
