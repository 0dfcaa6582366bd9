"""bench.sparse_crops: sparse parts of labelled tiles as tiles of their own, against the same pixels in context."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench.sparse_crops import context, crop_scores, figure, make, table
from labelfree.core.imageio import load_instance_map, load_rgb, save_png, save_tiff


def _tile(tmp_path: Path) -> np.ndarray:
    """A 128 x 64 tile whose left 64 x 64 crop is dense with labelled nuclei and the right one sparse."""
    rgb = np.random.default_rng(0).integers(120, 250, (64, 128, 3), dtype=np.uint8)
    inst = np.zeros((64, 128), np.uint16)
    inst[0:32, 0:32] = 1  # dense: a quarter of the left crop
    inst[10:14, 70:74] = 2  # sparse: 16 of 4096 px of the right crop
    save_png(tmp_path / "images" / "t.png", rgb)
    save_tiff(tmp_path / "labels" / "t.tif", inst)
    return inst


def test_make_keeps_only_the_sparse_crops_with_their_labels(tmp_path, capsys):
    inst = _tile(tmp_path)
    save_png(tmp_path / "images" / "odd.png", np.full((64, 64, 3), 200, np.uint8))
    save_tiff(tmp_path / "labels" / "odd.tif", np.zeros((32, 64), np.uint16))  # not the tile's size: one line
    make(str(tmp_path / "images"), str(tmp_path / "labels"), str(tmp_path / "crops"), crop=64, max_fraction=0.10)
    assert "skipped: odd.png: labels (32, 64) and image (64, 64) differ in size" in capsys.readouterr().out
    with open(tmp_path / "crops" / "crops.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["crop"] for r in rows] == ["t_y0_x64"]
    assert rows[0]["tile"] == "t" and rows[0]["labelled_fraction"] == "0.0039"
    assert np.array_equal(load_instance_map(tmp_path / "crops" / "labels" / "t_y0_x64.tif"), inst[:, 64:])
    assert load_rgb(tmp_path / "crops" / "images" / "t_y0_x64.png").shape == (64, 64, 3)


def test_context_cuts_the_whole_tile_prediction_to_each_crop(tmp_path):
    _tile(tmp_path)
    make(str(tmp_path / "images"), str(tmp_path / "labels"), str(tmp_path / "crops"), crop=64)
    whole = np.zeros((64, 128), np.uint32)
    whole[5:20, 65:80] = 7
    save_tiff(tmp_path / "pred" / "t_inst.tif", whole)
    context(str(tmp_path / "crops" / "crops.csv"), str(tmp_path / "pred"), str(tmp_path / "ctx"))
    assert np.array_equal(load_instance_map(tmp_path / "ctx" / "t_y0_x64_inst.tif"), whole[:, 64:])


def test_crop_scores_and_the_table_pool_area_and_count(tmp_path):
    gt = np.zeros((40, 40), np.uint16)
    gt[0:4, 0:4] = 1
    pred = np.zeros((40, 40), np.uint32)
    pred[0:4, 0:8] = 3  # twice the labelled nucleus
    pred[30:32, 30:32] = 4  # and a false object
    s = crop_scores(gt, pred)
    assert (s["true_area"], s["pred_area"], s["true_objects"], s["pred_objects"]) == (16, 36, 1, 2)
    save_tiff(tmp_path / "labels" / "c.tif", gt)
    save_tiff(tmp_path / "alone" / "c_inst.tif", pred)
    save_tiff(tmp_path / "ctx" / "c_inst.tif", gt.astype(np.uint32))
    preds = json.dumps({"alone": str(tmp_path / "alone"), "in context": str(tmp_path / "ctx")})
    assert table(str(tmp_path / "labels"), preds, str(tmp_path / "out"), "t") == str(tmp_path / "out" / "t.md")
    got = json.loads((tmp_path / "out" / "t.json").read_text())
    assert got["alone"]["summary"]["area_ratio"] == pytest.approx(36 / 16)
    assert got["alone"]["summary"]["share_over_bound"] == 1.0 and got["alone"]["summary"]["object_ratio"] == 2.0
    assert got["in context"]["summary"]["area_ratio"] == 1.0 and got["in context"]["summary"]["aji"] == 1.0
    save_png(tmp_path / "images" / "c.png", np.full((40, 40, 3), 200, np.uint8))
    figure(str(tmp_path / "images"), str(tmp_path / "labels"), preds, str(tmp_path / "f.png"))
    assert (tmp_path / "f.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="no crops"):
        table(str(tmp_path / "nothing"), preds, str(tmp_path / "out"), "u")
