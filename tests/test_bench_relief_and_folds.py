import csv
import json

import numpy as np
import pytest

from bench.haem_relief import haematoxylin_weight
from bench.heldout_folds import halves as heldout_halves
from bench.heldout_folds import run as heldout_folds


def test_the_haematoxylin_weight_dips_on_a_paler_line_and_leaves_holes_at_one():
    h = np.full((40, 60), 1.0)
    h[:, 29:31] = 0.3  # a paler line between two nuclei
    mask = np.ones_like(h, dtype=bool)
    mask[18:22, 10:14] = False  # a hole in the mask: a pale nucleus inside
    h[18:22, 10:14] = 0.0
    w = haematoxylin_weight(h, mask)
    assert w.shape == h.shape and w.min() >= 0 and w.max() <= 1
    assert w[20, 30] < 0.6 < w[20, 5]  # the line is deeper than the nucleus around it
    assert (w[18:22, 10:14] == 1).all()  # holes weigh 1
    assert (haematoxylin_weight(h, np.zeros_like(mask)) == 1).all()  # nothing to weigh


def _write(path, scores):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["method", "seed", "image", "dice", "aji", "pq", "precision", "recall"])
        w.writeheader()
        for tile, v in scores.items():
            w.writerow(
                {"method": "m", "seed": 0, "image": tile, "dice": v, "aji": v, "pq": v, "precision": v, "recall": v}
            )


def test_each_tile_is_scored_by_its_own_folds_model_as_seen_and_by_the_other_as_unseen(tmp_path):
    for fold, tiles in (("A", ("t0", "t2", "t4")), ("B", ("t1", "t3", "t5"))):
        (tmp_path / fold).mkdir()
        for t in tiles:
            (tmp_path / fold / f"{t}.png").write_bytes(b"")
    # model A is good on A's tiles (0.8) and worse on B's (0.6); model B the other way round
    _write(tmp_path / "a.csv", {f"t{i}": 0.8 if i % 2 == 0 else 0.6 for i in range(6)})
    _write(tmp_path / "b.csv", {f"t{i}": 0.7 if i % 2 else 0.5 for i in range(6)})
    summary = heldout_folds(
        folds=f"A={tmp_path / 'A'},B={tmp_path / 'B'}",
        results=f"A={tmp_path / 'a.csv'},B={tmp_path / 'b.csv'}",
        out=str(tmp_path / "out"),
    )
    assert summary["aji"]["seen"] == pytest.approx(0.75)  # A's tiles by A (0.8), B's by B (0.7)
    assert summary["aji"]["unseen"] == pytest.approx(0.55)  # A's tiles by B (0.5), B's by A (0.6)
    assert summary["aji"]["higher_unseen"] == 0
    saved = json.loads((tmp_path / "out" / "heldout_folds.json").read_text())
    assert {r["image"]: r["fold"] for r in saved["rows"]}["t3"] == "B"
    with pytest.raises(ValueError, match="2 folds are needed"):
        heldout_folds(folds=f"A={tmp_path / 'A'}", results=f"A={tmp_path / 'a.csv'}", out=str(tmp_path / "o2"))


def test_halves_gives_each_models_mean_on_each_folds_tiles(tmp_path):
    for fold, tiles in (("A", ("t0", "t2")), ("B", ("t1", "t3"))):
        (tmp_path / fold).mkdir()
        for t in tiles:
            (tmp_path / fold / f"{t}.png").write_bytes(b"")
    _write(tmp_path / "m.csv", {"t0": 0.2, "t1": 0.6, "t2": 0.4, "t3": 0.8})
    table = heldout_halves(
        folds=f"A={tmp_path / 'A'},B={tmp_path / 'B'}", results=f"m={tmp_path / 'm.csv'}", out=str(tmp_path / "o")
    )
    assert table["m"]["A"]["aji"] == pytest.approx(0.3) and table["m"]["B"]["aji"] == pytest.approx(0.7)
    _write(tmp_path / "short.csv", {"t0": 0.2})
    with pytest.raises(ValueError, match="missing"):
        heldout_halves(
            folds=f"A={tmp_path / 'A'},B={tmp_path / 'B'}",
            results=f"s={tmp_path / 'short.csv'}",
            out=str(tmp_path / "p"),
        )
