"""Benchmark input: one checkpoint whose weights are the mean of a recipe's self-training rounds ("round soup").

Each round of ``configs/recipe.json`` is fine-tuned from the round before, so the rounds' weights lie in one basin of
the loss, where averaging them (stochastic weight averaging, Izmailov et al. 2018; model soups, Wortsman et al. 2022)
can give a flatter, better-generalising network for nothing: no labels, no scores, no training. SSimNet's UNet has
no batch statistics (instance normalisation) that averaging would leave stale. The averaged checkpoint is then scored
like any other through the comparison harness (rule: ``bench/results/v6/recipe/round_soup_rule.txt``):

    python -m bench.round_soup --stages OUT/round1/model.pt,OUT/round2/model.pt,OUT/round3/model.pt \\
        --out SOUP/model.pt
    python -m bench.harness compare ... --options '{"ssimnet_shipped": {"ckpt_path": "SOUP/model.pt"}}'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import fire
import torch

from labelfree.core.imageio import atomic_path


def average_state_dicts(state_dicts: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts of one architecture (in float64, cast back to each entry's dtype).

    Args:
        state_dicts: at least one, all with the same keys and shapes.

    Returns:
        a state dict with the first one's keys, shapes and dtypes.

    Raises:
        ValueError: no state dict, or keys or shapes that differ.
    """
    if not state_dicts:
        raise ValueError("nothing to average: no state dict given")
    first = state_dicts[0]
    for i, sd in enumerate(state_dicts[1:], start=1):
        if sd.keys() != first.keys():
            raise ValueError(f"state dict {i} has other keys than the first: {sorted(set(sd) ^ set(first))[:3]}")
        shapes = [k for k in first if sd[k].shape != first[k].shape]
        if shapes:
            raise ValueError(f"state dict {i} differs from the first in the shape of {shapes[0]!r}")
    return {
        k: (
            (sum(sd[k].double() for sd in state_dicts) / len(state_dicts)).to(first[k].dtype)
            if first[k].is_floating_point()
            else first[k].clone()
        )  # integer entries (counters) are not averaged
        for k in first
    }


def main(stages: str | Sequence[str], out: str) -> None:
    """Average the checkpoints ``stages`` (comma-separated paths of bare state dicts) into ``out``, atomically."""
    paths = [Path(p) for p in (stages.split(",") if isinstance(stages, str) else stages) if p]
    soup = average_state_dicts([torch.load(p, map_location="cpu", weights_only=True) for p in paths])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(soup, tmp)
    print(f"{out}: the mean of {len(paths)} checkpoint(s)")


if __name__ == "__main__":
    fire.Fire(main)
