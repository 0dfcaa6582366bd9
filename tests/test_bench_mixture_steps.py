"""bench.mixture_steps on the embedded sample with the shipped DCGN checkpoint: every step scored, step 1 is the
bundle's own post-processing, and further steps change the answer."""

import json

from bench.mixture_steps import run
from labelfree.sample import sample_dir


def test_each_step_is_scored_on_every_tile(tmp_path):
    summary = run(str(sample_dir() / "images"), str(sample_dir() / "labels"), str(tmp_path), steps="0,1,3", threads=2)
    assert sorted(summary) == [0, 1, 3]
    rows = json.loads((tmp_path / "mixture_steps.json").read_text())["per_image"]
    assert len(rows) == 9 and all(0.0 <= r["dice"] <= 1.0 and 0.0 <= r["aji"] <= 1.0 for r in rows)
    by_step = {s: [r["area_ratio"] for r in rows if r["steps"] == s] for s in (0, 1, 3)}
    assert by_step[0] != by_step[1] and by_step[1] != by_step[3]
    assert "| 1 |" in (tmp_path / "mixture_steps.md").read_text()
