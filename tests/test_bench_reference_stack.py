"""The reference-stack benchmark: its table, its refusal without the optional libraries, and (where SPAMS and
scikit-fuzzy are installed) the reference recipe itself on a synthetic tile."""

import builtins

import numpy as np
import pytest

from bench import reference_stack
from synthetic import synthetic_tile


def test_markdown_reports_speed_up_against_the_reference_and_agreement():
    result = {
        "tiles": 3,
        "machine": "2 CPU cores",
        "date": "d",
        "command": "python -m bench.reference_stack ...",
        "summary": {
            name: {"description": name, "median_seconds": s, "dice": 0.7, "aji": 0.4, "pq": 0.3}
            for name, s in (("reference", 12.0), ("ours_paper", 0.6), ("ours_default", 1.5))
        },
        "mask_dice_ours_paper_vs_reference": {"mean": 0.91, "min": 0.85},
    }
    md = reference_stack.markdown(result)
    assert "| reference | 12.00 | 1.0× | 0.700 / 0.400 / 0.300 |" in md
    assert "| ours_paper | 0.60 | 20.0× |" in md and "| ours_default | 1.50 | 8.0× |" in md
    assert "Dice 0.910 on average, 0.850 at worst" in md


def test_without_the_extra_it_says_how_to_install_it(monkeypatch):
    real_import = builtins.__import__

    def without_reference(name, *args, **kwargs):
        if name in ("spams", "skfuzzy"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_reference)
    with pytest.raises(SystemExit, match=r"pip install -e \.\[reference\] \((spams|skfuzzy) is missing\)"):
        reference_stack.run("unused")


def test_reference_recipe_finds_the_synthetic_nuclei():
    pytest.importorskip("spams")
    pytest.importorskip("skfuzzy")
    tile = synthetic_tile(size=192, n_nuclei=14, touching_pairs=2, seed=3)
    inst = reference_stack.reference_pseudo_labels(tile.image, seed=0)
    a = reference_stack.reference_pseudo_labels(tile.image, seed=0)
    assert np.array_equal(inst, a) and inst.dtype == np.int32  # same seed, same result
    truth = tile.instances > 0
    dice = 2 * (truth & (inst > 0)).sum() / (truth.sum() + (inst > 0).sum())
    assert dice > 0.7 and inst.max() >= 10
