import numpy as np
import pytest

from bench.harness.errors import (
    drop_off_nucleus_objects,
    edge_offset,
    fp_in_false_objects,
    join_fragments_by_labels,
    merged_fraction,
    split_by_true_markers,
    split_merges_by_labels,
    tile_errors,
)


def disc(m, cy, cx, r, value):
    yy, xx = np.mgrid[: m.shape[0], : m.shape[1]]
    m[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value


def test_border_and_whole_object_errors_are_told_apart():
    gt = np.zeros((80, 80), np.int32)
    disc(gt, 20, 20, 8, 1)
    disc(gt, 60, 60, 8, 2)
    pred = np.zeros_like(gt)
    disc(pred, 20, 21, 8, 1)  # nucleus 1 found, shifted by one pixel; nucleus 2 missed whole
    e = tile_errors(gt, pred)
    assert e["fp_at_border"] == 1.0  # every extra pixel hugs nucleus 1
    assert 0.4 < e["fn_fraction"] < 0.6  # about half the labelled area is missed ...
    assert e["fn_at_border"] < 0.1  # ... almost all of it in nucleus 2, far from any prediction
    assert e["area_ratio"] == pytest.approx(0.5, abs=0.01)
    assert e["aji_true_foreground"] == 1.0  # two separate discs: the watershed splits a perfect mask perfectly


def test_perfect_prediction_and_shape_check():
    gt = np.zeros((40, 40), np.int32)
    disc(gt, 20, 20, 9, 1)
    e = tile_errors(gt, gt)
    assert e["fp_fraction"] == e["fn_fraction"] == 0.0 and e["aji"] == 1.0 and e["area_ratio"] == 1.0
    with pytest.raises(ValueError, match="shape"):
        tile_errors(gt, gt[:30])


def test_merged_nuclei_are_counted_and_true_markers_split_them():
    gt = np.zeros((60, 90), np.int32)
    disc(gt, 30, 25, 10, 1)
    disc(gt, 30, 45, 10, 2)  # touches nucleus 1
    disc(gt, 30, 75, 6, 3)
    pred = ((gt == 1) | (gt == 2)).astype(np.int32)  # 1 and 2 as one object, 3 missed
    assert merged_fraction(gt, pred) == pytest.approx(2 / 3)
    assert merged_fraction(gt, gt) == 0.0
    split = split_by_true_markers(gt, pred)
    assert len(np.unique(split)) == 3 and (split[gt == 1] == split[30, 25]).mean() > 0.95
    e = tile_errors(gt, pred)
    assert e["aji_true_markers"] > e["aji"]


def test_each_kind_of_error_is_repaired_alone_by_the_labels():
    from labelfree.core.metrics import aji

    gt = np.zeros((60, 120), np.int32)
    disc(gt, 30, 25, 10, 1)
    disc(gt, 30, 44, 10, 2)  # overlaps nucleus 1: the labels give the shared pixels to nucleus 2
    disc(gt, 30, 90, 12, 3)
    pred = np.zeros_like(gt)
    pred[(gt == 1) | (gt == 2)] = 1  # nuclei 1 and 2 merged
    pred[(gt == 3) & (np.arange(120)[None, :] < 90)] = 2  # nucleus 3 in two fragments
    pred[(gt == 3) & (np.arange(120)[None, :] >= 90)] = 3
    disc(pred, 8, 110, 5, 4)  # an object on no nucleus
    split = split_merges_by_labels(gt, pred)
    assert (split[gt == 1] == split[30, 25]).all() and (split[gt == 2] == split[30, 44]).all()
    assert split[30, 25] != split[30, 44] and (split[gt == 3] == pred[gt == 3]).all()  # the rest as predicted
    joined = join_fragments_by_labels(gt, pred)
    assert len(np.unique(joined[gt == 3])) == 1 and (joined[gt == 1] == joined[30, 25]).all()
    dropped = drop_off_nucleus_objects(gt, pred)
    assert not (dropped == 4).any() and (dropped[pred != 4] == pred[pred != 4]).all()
    e = tile_errors(gt, pred)
    assert e["aji"] < min(e["aji_merges_split"], e["aji_fragments_joined"], e["aji_off_nucleus_dropped"])
    repaired = drop_off_nucleus_objects(gt, join_fragments_by_labels(gt, split_merges_by_labels(gt, pred)))
    assert aji(gt, repaired) == pytest.approx(1.0)
    for fix in (split_merges_by_labels, join_fragments_by_labels, drop_off_nucleus_objects):
        assert (fix(gt, gt) == gt).all()  # nothing to repair in a perfect prediction


def test_edge_offset_is_the_outline_shift_of_matched_nuclei():
    gt = np.zeros((80, 80), np.int32)
    disc(gt, 25, 25, 10, 1)
    disc(gt, 55, 55, 10, 2)
    wide, narrow = np.zeros_like(gt), np.zeros_like(gt)
    disc(wide, 25, 25, 12, 1)  # two pixels beyond the labelled outline
    disc(wide, 55, 55, 12, 2)
    disc(narrow, 25, 25, 8, 1)
    disc(narrow, 55, 55, 8, 2)
    assert 1.5 < edge_offset(gt, wide) < 2.5
    assert -2.5 < edge_offset(gt, narrow) < -1.5
    assert edge_offset(gt, gt) == 0.0
    assert edge_offset(gt, np.zeros_like(gt)) == 0.0  # nothing matches


def test_false_positives_are_told_apart_by_object():
    gt = np.zeros((80, 80), np.int32)
    disc(gt, 25, 25, 10, 1)
    pred = np.zeros_like(gt)
    disc(pred, 25, 25, 11, 1)  # outline one pixel wide: its extra pixels belong to a true nucleus's object
    assert fp_in_false_objects(gt, pred) == 0.0
    disc(pred, 60, 60, 8, 2)  # an object on no nucleus
    share = fp_in_false_objects(gt, pred)
    extra_wide = ((pred == 1) & (gt == 0)).sum()
    assert share == pytest.approx((pred == 2).sum() / ((pred == 2).sum() + extra_wide))
    e = tile_errors(gt, pred)
    assert e["fp_in_false_objects"] == share and e["edge_offset"] > 0


def test_error_analyses_of_several_runs_are_averaged(tmp_path):
    import json

    from bench.error_means import run as error_means
    from bench.harness.errors import ERROR_COLUMNS

    for seed, value in ((0, 0.2), (1, 0.4)):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        (folder / "error_analysis.json").write_text(json.dumps({"mean": {c: value for c in ERROR_COLUMNS}}))
    mean = error_means(str(tmp_path / "seed*" / "error_analysis.json"), out=str(tmp_path / "out"))
    assert mean["merged_fraction"] == pytest.approx(0.3) and set(mean) == set(ERROR_COLUMNS)
    saved = json.loads((tmp_path / "out" / "error_means.json").read_text())
    assert len(saved["runs"]) == 2 and "**0.300**" in (tmp_path / "out" / "error_means.md").read_text()
    with pytest.raises(FileNotFoundError, match="no error analysis"):
        error_means(str(tmp_path / "none*" / "error_analysis.json"))
