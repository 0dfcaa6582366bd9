"""Independent CPU steps of one tile run side by side in threads.

The steps this is for (the two clusterings of a tile's pseudo labels) spend most of their time in numpy, scipy and torch
kernels that release the GIL, so on two cores they finish sooner side by side than one after the other (about 0.22 s
instead of 0.31 s for the two of a MoNuSeg tile; the parts that hold the GIL, such as scipy's labelling, still take
turns). The thread count follows torch's (``torch.set_num_threads``, the bundles' ``num_threads``): with one thread
allowed, as in a DataLoader worker, the steps run one after the other. Each step must own its random generators; then
the results are the same either way.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

__all__ = ["set_cpu_threads", "side_by_side"]


def set_cpu_threads(threads: int) -> None:
    """Let torch and numpy's BLAS each use at most ``threads`` threads.

    A bundle's inference keeps the cores busy with its own threads (the network, post-processing behind it, the stain
    view's re-colouring beside it). numpy's OpenBLAS would start as many threads again for every large product (a
    tile's colours times a stain matrix) and spin them on cores those threads hold: the stain view's re-colouring took
    twice as long beside a training run with two BLAS threads as with one (0.29 s against 0.13 s a MoNuSeg tile). A
    product's entries do not depend on how its rows are shared between threads: the same results.

    Args:
        threads: at least 1.
    """
    threads = max(int(threads), 1)
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an environment built from an older bundle's package list: slower, the same results
        return
    threadpool_limits(limits=threads, user_api="blas")


def side_by_side(*steps: Callable[[], Any]) -> list[Any]:
    """Call every step and return their results in order, in up to ``torch.get_num_threads()`` threads.

    Args:
        steps: functions without arguments, independent of each other.

    Returns:
        their results, in the order given; the first exception raised by a step is raised again.
    """
    threads = min(len(steps), torch.get_num_threads())
    if threads < 2:
        return [step() for step in steps]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="side-by-side") as pool:
        futures = [pool.submit(step) for step in steps]
        return [future.result() for future in futures]
