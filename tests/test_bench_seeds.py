import json

import pytest

from bench.seed_spread import spread


def test_seed_spread_reads_each_seed_and_reports_mean_and_sample_std(tmp_path, capsys):
    for seed, aji in ((0, 0.40), (1, 0.44), (10, 0.42)):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        metrics = {k: {"mean": v} for k, v in (("dice", 0.8), ("aji", aji), ("pq", 0.3))}
        (folder / "summary.json").write_text(json.dumps({"metrics": {"m": metrics}}))
    (tmp_path / "seed_spread.md").write_text("an earlier table, not a report")
    spread(str(tmp_path / "seed*"), method="m", out=str(tmp_path / "out"))
    report = json.loads((tmp_path / "out" / "seed_spread.json").read_text())
    assert list(report["seeds"]) == ["0", "1", "10"]  # numeric order, not text order
    assert report["mean"]["aji"] == pytest.approx(0.42) and report["std"]["aji"] == pytest.approx(0.02)
    assert "0.420 ± 0.020" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no report"):
        spread(str(tmp_path / "nothing*"))
