"""The comparison harness: tables and tests on fixed numbers, scoring, and an end-to-end run on the embedded sample."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.stats import wilcoxon

from bench.harness.compare import compare, parse_methods, parse_seeds
from bench.harness.methods import cluster_classes, otsu_connected_components
from bench.harness.scoring import score_image
from bench.harness.tables import degeneration, results_table, summarise, wilcoxon_vs_best
from labelfree.sample import sample_dir

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def _rows() -> list[dict]:
    # method a: two seeds; method b: one seed, lower on every image but one
    a0 = [0.80, 0.70, 0.75, 0.90, 0.60, 0.85]
    a1 = [0.78, 0.72, 0.71, 0.88, 0.62, 0.83]
    b0 = [0.50, 0.65, 0.70, 0.95, 0.40, 0.55]
    rows = []
    for method, seed, values in (("a", 0, a0), ("a", 1, a1), ("b", 0, b0)):
        for i, v in enumerate(values):
            fractions = [0.99, 0.01] if (method == "b" and i == 0) else [0.7, 0.3]
            if method == "b" and i == 1:
                fractions = [0.995, 0.005]
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    "image": f"im{i}",
                    "dice": v,
                    "aji": v - 0.2,
                    "class_fractions": fractions,
                }
            )
    return rows


def test_summary_is_mean_std_best_of_per_seed_means():
    s = summarise(_rows(), ("dice",))
    m0, m1 = np.mean([0.80, 0.70, 0.75, 0.90, 0.60, 0.85]), np.mean([0.78, 0.72, 0.71, 0.88, 0.62, 0.83])
    assert s["a"]["dice"]["mean"] == pytest.approx((m0 + m1) / 2)
    assert s["a"]["dice"]["std"] == pytest.approx(abs(m0 - m1) / 2)
    assert s["a"]["dice"]["best"] == pytest.approx(max(m0, m1))
    assert s["b"]["dice"]["runs"] == 1


def test_wilcoxon_against_the_best_method_on_per_image_seed_means():
    best, p = wilcoxon_vs_best(_rows(), "dice")
    assert best == "a" and p["a"] is None
    a = np.mean([[0.80, 0.70, 0.75, 0.90, 0.60, 0.85], [0.78, 0.72, 0.71, 0.88, 0.62, 0.83]], axis=0)
    b = np.array([0.50, 0.65, 0.70, 0.95, 0.40, 0.55])
    assert p["b"] == pytest.approx(wilcoxon(b - a).pvalue)
    assert 0 < p["b"] < 1


def test_degeneration_counts_collapse_empty_and_instability():
    d = degeneration(_rows())
    assert d["b"] == {"image_runs": 6, "collapse": 2, "empty_class": 1, "runs": 1, "dice_std": 0.0, "unstable": False}
    assert d["a"]["collapse"] == 0 and d["a"]["empty_class"] == 0
    rows = _rows() + [{**r, "seed": 2, "dice": r["dice"] - 0.3} for r in _rows() if r["method"] == "a"]
    assert degeneration(rows)["a"]["unstable"]  # per-seed means 0.77, 0.76, 0.47: std 0.14 > 0.08


def test_results_table_has_a_row_per_method_and_reports_failures():
    table = results_table(_rows(), ["a", "b", "c"], failures={"c": "exit 1: boom"})
    lines = table.splitlines()
    assert lines[0].startswith("| method | runs | dice")
    a_row = next(ln for ln in lines if ln.startswith("| a |"))
    assert "best" in a_row and " ± " in a_row
    assert any(ln.startswith("| c | failed: exit 1: boom") for ln in lines)


def test_parse_methods_and_seeds():
    assert parse_methods("otsu_ws, kmeans") == ["otsu_ws", "kmeans"]
    with pytest.raises(ValueError, match="unknown methods"):
        parse_methods("otsu_ws,nope")
    assert parse_seeds(3) == [0, 1, 2] and parse_seeds("0,4") == [0, 4]
    with pytest.raises(ValueError):
        parse_seeds(0)


def test_oracle_pick_uses_the_class_that_matches_the_labels():
    gt = np.zeros((64, 64), np.int32)
    gt[10:20, 10:20] = 1
    gt[40:52, 30:44] = 2
    classes = (gt == 0).astype(np.int64)  # the label-free naming got it backwards: class 1 is the background
    inst = np.where(classes == 1, 1, 0)
    s = score_image(gt, inst, classes, 2)
    assert s["oracle_class"] == 0 and s["oracle_dice"] == pytest.approx(1.0) and s["oracle_aji"] == pytest.approx(1.0)
    assert s["dice"] < 0.2
    assert s["class_fractions"] == pytest.approx([(gt > 0).mean(), (gt == 0).mean()])


def test_baselines_name_the_darkest_cluster_nuclei(tile):
    rgb = tile.image
    classes = cluster_classes(rgb, 3, "gmm", seed=0)
    means = [rgb[classes == c].mean() for c in range(3)]
    assert means == sorted(means, reverse=True)  # brightest first, nuclei (darkest) last
    dice = 2 * ((classes == 2) & (tile.instances > 0)).sum() / ((classes == 2).sum() + (tile.instances > 0).sum())
    assert dice > 0.7
    inst = otsu_connected_components(rgb)
    assert inst.max() > 5


@pytest.mark.slow  # the harness's run-and-score path is covered fast by the crashed-method test below
def test_compare_end_to_end_on_the_sample_is_resumable(tmp_path):
    s = sample_dir()
    out = tmp_path / "cmp"
    summary = compare(str(s / "images"), str(s / "labels"), "otsu_ws,kmeans", seeds=2, out=str(out))
    for name in (
        "results.csv",
        "summary.json",
        "table.md",
        "degeneration.md",
        "speed.md",
        "report.md",
        "boxplot.png",
        "overlays.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 3  # otsu_ws once (deterministic), kmeans with 2 seeds, 3 tiles each
    assert {r["method"] for r in rows} == {"otsu_ws", "kmeans"}
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    assert summary["metrics"]["otsu_ws"]["dice"]["mean"] > 0.6
    assert json.loads((out / "summary.json").read_text())["seeds"] == [0, 1]
    done = out / "runs" / "kmeans" / "seed1" / "done.json"
    stamp = done.stat().st_mtime_ns
    compare(str(s / "images"), str(s / "labels"), "otsu_ws,kmeans", seeds=2, out=str(out))
    assert done.stat().st_mtime_ns == stamp  # a finished run is not recomputed


def test_no_overlays_asked_gives_a_report_without_the_figure(tmp_path):
    s = sample_dir()
    out = tmp_path / "no_overlays"
    compare(str(s / "images"), str(s / "labels"), "otsu_ws", seeds=1, out=str(out), n_overlays=0)
    assert (out / "summary.json").is_file() and (out / "boxplot.png").is_file()
    assert not (out / "overlays.png").exists()


def test_a_crashed_method_is_reported_and_the_others_still_run(tmp_path):
    s = sample_dir()
    out = tmp_path / "cmp"
    options = {"ssimnet": {"patch_size": "not-a-size"}}
    summary = compare(str(s / "images"), str(s / "labels"), "otsu_cc,ssimnet", seeds=1, out=str(out), options=options)
    assert "ssimnet/seed0" in summary["failures"]
    table = (out / "table.md").read_text()
    assert "| ssimnet | failed: " in table
    assert next(ln for ln in table.splitlines() if ln.startswith("| otsu_cc |")).count("failed") == 0
    assert not (out / "runs" / "ssimnet" / "seed0" / "done.json").exists()  # a re-run retries it


def test_a_shipped_checkpoint_run_is_redone_when_the_checkpoint_changes(tmp_path, monkeypatch):
    from bench.harness import compare as cmp
    from bench.harness.methods import METHODS, Method

    digest = {"value": "aaaa"}
    shipped = Method("fake_shipped", False, 2, METHODS["otsu_ws"].run, "fake", lambda: digest["value"])
    monkeypatch.setitem(METHODS, "fake_shipped", shipped)
    first = cmp._run_dir(tmp_path, "fake_shipped", 0, {})
    assert cmp._run_dir(tmp_path, "fake_shipped", 0, {}) == first
    digest["value"] = "bbbb"
    assert cmp._run_dir(tmp_path, "fake_shipped", 0, {}) != first
    assert cmp._run_dir(tmp_path, "otsu_ws", 0, {}).name == "seed0"  # no fingerprint, folder as before
    assert len(METHODS["ssimnet_shipped"].fingerprint()) == 12


def test_json_booleans_in_options_reach_the_bundle_as_booleans():
    from bench.harness.compare import _as_dict
    from bench.harness.methods import _overrides

    # fire turns the command line's {"finetune": false} into a dict holding the string "false"
    for given in (
        '{"ssimnet": {"finetune": false, "max_epochs": 3}}',
        {"ssimnet": {"finetune": "false", "max_epochs": 3}},
    ):
        opts = _as_dict(given)
        assert opts == {"ssimnet": {"finetune": False, "max_epochs": 3}}
        assert _overrides(opts["ssimnet"]) == ["--finetune", "False", "--max_epochs", "3"]


def test_a_runs_folder_shared_by_two_image_folders_never_hands_one_the_others_run(tmp_path):
    import shutil

    s = sample_dir()
    tiles = sorted(p for p in (s / "images").iterdir() if p.is_file())
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, chosen in ((first, tiles[:2]), (second, tiles[2:])):
        (folder / "images").mkdir(parents=True)
        for p in chosen:
            shutil.copy(p, folder / "images" / p.name)
    runs = tmp_path / "runs"
    compare(str(first / "images"), str(s / "labels"), "otsu_ws", seeds=1, out=str(first / "out"), runs=str(runs))
    summary = compare(
        str(second / "images"), str(s / "labels"), "otsu_ws", seeds=1, out=str(second / "out"), runs=str(runs)
    )
    assert (
        "give" in summary["failures"]["otsu_ws/seed0"] and str(first / "images") in summary["failures"]["otsu_ws/seed0"]
    )
    assert not list(csv.DictReader(open(second / "out" / "results.csv")))  # no row of the other folder's run
    # a run written before the inputs were recorded is checked by the tiles it scored
    done = runs / "otsu_ws" / "seed0" / "done.json"
    record = json.loads(done.read_text())
    done.write_text(json.dumps({"timings": record["timings"], "scores": record["scores"]}))
    summary = compare(
        str(second / "images"), str(s / "labels"), "otsu_ws", seeds=1, out=str(second / "out"), runs=str(runs)
    )
    assert "other tiles" in summary["failures"]["otsu_ws/seed0"]
    again = compare(
        str(first / "images"), str(s / "labels"), "otsu_ws", seeds=1, out=str(first / "out"), runs=str(runs)
    )
    assert not again["failures"] and len(list(csv.DictReader(open(first / "out" / "results.csv")))) == 2
