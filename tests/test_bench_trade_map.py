"""bench.trade_map: each arm's mean change from its table's reference over the seeds they share, on both sets."""

import json

import pytest

from bench.trade_map import arm_changes, run


def _scores(dice, aji, pq):
    return {"dice": dice, "aji": aji, "pq": pq}


def _table():
    def arm(seeds):
        return {"seeds": {str(k): _scores(*v) for k, v in seeds.items()}, "mean": {}}

    return {
        "monuseg": {
            "ref": arm({0: (0.70, 0.40, 0.30), 1: (0.72, 0.42, 0.32)}),
            "wider": arm({0: (0.72, 0.41, 0.30), 1: (0.74, 0.43, 0.32), 2: (0.9, 0.9, 0.9)}),
            "alone": arm({5: (0.1, 0.1, 0.1)}),
        },
        "cpm15": {
            "ref": arm({0: (0.80, 0.60, 0.50), 1: (0.82, 0.62, 0.52)}),
            "wider": arm({0: (0.79, 0.58, 0.50), 1: (0.81, 0.60, 0.50)}),
            "alone": arm({5: (0.1, 0.1, 0.1)}),
        },
    }


def test_an_arms_change_is_taken_over_the_seeds_it_shares_with_the_reference_on_both_sets():
    (row,) = arm_changes(_table())  # "alone" shares no seed with the reference
    assert row["arm"] == "wider" and row["reference"] == "ref" and row["seeds"] == [0, 1]
    assert row["monuseg_dice"] == pytest.approx(0.02) and row["monuseg_aji"] == pytest.approx(0.01)
    assert row["cpm15_dice"] == pytest.approx(-0.01) and row["cpm15_aji"] == pytest.approx(-0.02)
    assert row["cpm15_pq"] == pytest.approx(-0.01)
    assert arm_changes({"monuseg": _table()["monuseg"]}) == []


def test_run_counts_the_trade_and_writes_the_table_and_figure(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "table.json").write_text(json.dumps(_table()))
    (tmp_path / "other.json").write_text("[1, 2]")
    out = tmp_path / "out"
    result = run(root=str(tmp_path), out=str(out))
    assert len(result["rows"]) == 2
    assert result["quadrants"]["aji"]["up on MoNuSeg, down on CPM-15"] == 2
    assert (out / "trade_map.png").stat().st_size > 0
    assert "| up on MoNuSeg, down on CPM-15 | 2 | 2 | 0 |" in (out / "trade_map.md").read_text()
