"""The uncertain-objects benchmark: every rule scored per tile, the faint object dropped by the mean rules only where
its probability says so, p-values against keeping everything."""

import json

import numpy as np

import bench.uncertain_objects as uo
from labelfree.core.imageio import save_png, save_tiff


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_rules_on_a_nucleus_a_faint_blob_and_a_pale_ring(tmp_path, monkeypatch):
    shape = (60, 150)
    nucleus, faint, ring = _disc(shape, 30, 20, 12), _disc(shape, 30, 65, 12), _disc(shape, 30, 110, 14)
    prob = np.where(nucleus, 0.9, 0.0) + np.where(faint, 0.4, 0.0) + np.where(ring, 0.6, 0.0)
    prob[_disc(shape, 30, 110, 8)] = 0.05  # a pale inside: below 0.5 on average unless filled holes count as 1
    truth = (nucleus * 1 + ring * 2).astype(np.uint16)  # the faint blob is not a nucleus
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name in ("a", "b"):
        save_png(tmp_path / "images" / f"{name}.png", np.full((*shape, 3), 200, np.uint8))
        save_tiff(tmp_path / "labels" / f"{name}.tif", truth)
    monkeypatch.setattr(uo, "nucleus_probabilities", lambda images: {"a": prob, "b": prob.copy()})
    result = uo.run(str(tmp_path / "images"), str(tmp_path / "labels"), out=str(tmp_path / "out"))
    dropped = {rule: per_tile["a"][4] for rule, per_tile in result["rules"].items()}
    assert dropped == {"keep_all": 0, "mean_prob_holes_as_1": 1, "mean_prob": 2, "peak_prob": 1}
    aji = {rule: per_tile["a"][1] for rule, per_tile in result["rules"].items()}
    assert aji["mean_prob_holes_as_1"] > aji["keep_all"] and aji["mean_prob_holes_as_1"] > aji["mean_prob"]
    table = (tmp_path / "out" / "uncertain_objects.md").read_text()
    assert "| keep_all |" in table and "| mean_prob_holes_as_1 |" in table
    assert json.loads((tmp_path / "out" / "uncertain_objects.json").read_text())["rules"].keys() == set(uo.RULES)
