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


def _report(folder, scores, collapse=0):
    """A harness report folder: per-tile ``results.csv`` and the ``summary.json`` degeneration counts."""
    folder.mkdir(parents=True)
    rows = ["method,seed,image,dice,aji,pq,precision,recall"]
    rows += [f"m,0,t{i},{d},{a},0.3,0.6,0.9" for i, (d, a) in enumerate(scores)]
    (folder / "results.csv").write_text("\n".join(rows) + "\n")
    deg = {"m": {"image_runs": len(scores), "collapse": collapse, "empty_class": 0}}
    (folder / "summary.json").write_text(json.dumps({"degeneration": deg}))


def test_arm_table_pairs_tiles_over_shared_seeds(tmp_path):
    from bench.arm_table import summarise

    tiles = 8
    _report(tmp_path / "nuclei" / "random" / "seed0", [(0.6, 0.30)] * tiles)
    _report(tmp_path / "nuclei" / "random" / "seed1", [(0.7, 0.34)] * tiles, collapse=1)
    _report(tmp_path / "nuclei" / "pretrained" / "seed0", [(0.7, 0.40 + 0.01 * i) for i in range(tiles)])
    _report(tmp_path / "nuclei" / "pretrained" / "seed1", [(0.7, 0.40 + 0.01 * i) for i in range(tiles)])
    _report(tmp_path / "nuclei" / "pretrained" / "seed2", [(0.1, 0.0)] * tiles)  # no random seed 2: not paired
    _report(tmp_path / "other" / "random" / "seed0", [(0.5, 0.2)] * tiles)  # no pretrained arm: left out
    result = summarise(str(tmp_path), "random,pretrained")
    assert list(result) == ["nuclei"]
    random, pretrained = result["nuclei"]["random"], result["nuclei"]["pretrained"]
    assert random["mean"]["aji"] == pytest.approx(0.32) and random["std"]["aji"] == pytest.approx(0.0283, abs=1e-4)
    assert (random["collapsed"], random["image_runs"]) == (1, 2 * tiles)
    test = pretrained["vs_random"]["aji"]
    # per tile: seeds 0 and 1 only, pretrained 0.40 + 0.01 i against random 0.32
    assert test["delta"] == pytest.approx(0.435 - 0.32) and test["higher"] == tiles and test["p"] < 0.01
    assert "higher on 8 of 8 tiles" in (tmp_path / "table.md").read_text()
    # every tile predicts 0.9 / 0.6 of its true area (pixel recall / precision)
    assert random["worst_area_ratio"][0]["ratio"] == pytest.approx(1.5)
    assert "| 1.50 (highest) |" in (tmp_path / "table.md").read_text()
    with pytest.raises(SystemExit, match="no data set"):
        summarise(str(tmp_path), "random,other_arm")


def test_worst_area_ratio_names_the_tile_and_survives_an_empty_prediction():
    from bench.arm_table import worst_area_ratio

    tiles = {"dense": {"precision": 0.8, "recall": 0.8}, "sparse": {"precision": 0.4, "recall": 0.9}}
    assert worst_area_ratio(tiles) == (pytest.approx(2.25), "sparse")
    assert worst_area_ratio({**tiles, "wrong": {"precision": 0.0, "recall": 0.0}}) == (float("inf"), "wrong")


def test_arm_table_reads_an_arm_from_another_root_and_keeps_only_the_named_seeds(tmp_path):
    from bench.arm_table import summarise

    tiles = 6
    here, there = tmp_path / "here", tmp_path / "there"
    for s in range(3):
        _report(here / "nuclei" / "new" / f"seed{s}", [(0.7, 0.40 + 0.01 * i) for i in range(tiles)])
        _report(there / "nuclei" / "old" / f"seed{s}", [(0.6, 0.30)] * tiles)
    _report(there / "nuclei" / "old" / "seed3", [(0.1, 0.0)] * tiles)  # dropped by --seeds
    result = summarise(str(here), f"old@{there},new", seeds="0,2", name="pair")
    old = result["nuclei"][f"old@{there}"]
    assert sorted(old["seeds"]) == [0, 2] and old["mean"]["aji"] == pytest.approx(0.30)
    assert sorted(result["nuclei"]["new"]["seeds"]) == [0, 2]
    assert result["nuclei"]["new"][f"vs_old@{there}"]["aji"]["higher"] == tiles
    assert "--seeds 0,2 --name pair" in (here / "pair.md").read_text() and (here / "pair.json").is_file()
    assert not (here / "table.md").exists() and not (there / "pair.md").exists()


def test_arm_table_reads_an_arm_whose_root_names_the_data_set(tmp_path):
    from bench.arm_table import summarise

    tiles = 5
    here, there = tmp_path / "here", tmp_path / "there"
    for s in range(2):
        _report(here / "nuclei" / "new" / f"seed{s}", [(0.7, 0.50)] * tiles)
        # seed_spread's layout: one recipe per root, <data set>/seed<N>, no arm folder
        _report(there / "nuclei" / f"seed{s}", [(0.6, 0.40)] * tiles)
    arm = f"old@{there}/{{ds}}"
    result = summarise(str(here), f"{arm},new")
    assert sorted(result["nuclei"][arm]["seeds"]) == [0, 1] and result["nuclei"][arm]["mean"]["aji"] == pytest.approx(
        0.4
    )
    assert result["nuclei"]["new"][f"vs_{arm}"]["aji"]["higher"] == tiles


def test_arm_table_reads_one_report_folder_per_seed_from_a_pattern(tmp_path):
    from bench.arm_table import summarise

    tiles = 5
    here, there = tmp_path / "here", tmp_path / "there"
    for s in range(3):
        _report(here / "nuclei" / "new" / f"seed{s}", [(0.7, 0.50)] * tiles)
    # each checkpoint scored once as an arm of its own (single<N>/seed0); seed 1 has no report, single2's seed1 is
    # another run and single_x is not a seed
    for s, aji in ((0, 0.40), (2, 0.44)):
        _report(there / "nuclei" / f"single{s}" / "seed0", [(0.6, aji)] * tiles, collapse=s)
    _report(there / "nuclei" / "single2" / "seed1", [(0.1, 0.0)] * tiles)
    _report(there / "nuclei" / "single_x" / "seed0", [(0.1, 0.0)] * tiles)
    arm = f"old@{there}/{{ds}}/single{{seed}}/seed0"
    result = summarise(str(here), f"{arm},new")
    old = result["nuclei"][arm]
    assert sorted(old["seeds"]) == [0, 2] and old["mean"]["aji"] == pytest.approx(0.42)
    assert (old["collapsed"], old["image_runs"]) == (2, 2 * tiles)  # each seed's own summary
    assert result["nuclei"]["new"][f"vs_{arm}"]["aji"]["higher"] == tiles


def test_arm_table_reads_report_folders_without_a_harness_summary(tmp_path):
    """A post-processing benchmark writes only results.csv: no degeneration counts, the rest as usual."""
    from bench.arm_table import summarise

    _report(tmp_path / "nuclei" / "default" / "seed0", [(0.7, 0.40)] * 4)
    _report(tmp_path / "nuclei" / "fused" / "seed0", [(0.7, 0.45)] * 4)
    (tmp_path / "nuclei" / "fused" / "seed0" / "summary.json").unlink()
    fused = summarise(str(tmp_path), "default,fused")["nuclei"]["fused"]
    assert fused["mean"]["aji"] == pytest.approx(0.45) and (fused["collapsed"], fused["image_runs"]) == (0, 0)
