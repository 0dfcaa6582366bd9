"""bench.perturbations: tiles changed as another scanner or lab would change them, and the table of their scores."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench.perturbations import CONDITIONS, blur, examples, jpeg, make, noise, scale_stains, table
from labelfree.core.imageio import load_rgb, save_png, save_tiff
from labelfree.transforms.stain import optical_density
from labelfree.transforms.stain_augment import HED_FROM_RGB_STAINS


def _stained(h: float, e: float) -> np.ndarray:
    """One pixel of ``h`` haematoxylin and ``e`` eosin (HED concentrations), as uint8 RGB."""
    od = np.array([h, e, 0.0]) @ HED_FROM_RGB_STAINS
    return np.clip(np.rint(255.0 * np.exp(-od)), 0, 255).astype(np.uint8)


def _hed(rgb: np.ndarray) -> np.ndarray:
    return optical_density(rgb).reshape(-1, 3).astype(np.float64) @ np.linalg.inv(HED_FROM_RGB_STAINS)


def test_scale_stains_moves_one_stain_and_leaves_glass_and_the_other_stain():
    tile = np.stack([_stained(0.5, 0.0), _stained(0.0, 0.4), np.full(3, 255, np.uint8)])[None]  # (1, 3, 3)
    assert np.array_equal(scale_stains(tile), tile)  # factors of 1: the same bytes
    faded = scale_stains(tile, haematoxylin=0.6)
    assert np.array_equal(faded[0, 2], [255, 255, 255])  # glass stays white
    assert np.abs(faded[0, 1].astype(int) - tile[0, 1]).max() <= 1  # eosin only: untouched but for rounding
    before, after = _hed(tile[:, :1]), _hed(faded[:, :1])
    assert after[0, 0] == pytest.approx(0.6 * before[0, 0], rel=0.05)  # haematoxylin at 0.6 of itself
    assert (faded[0, 0] > tile[0, 0]).any()  # lighter


def test_noise_is_the_same_for_a_tile_and_differs_between_tiles():
    rgb = np.full((16, 16, 3), 128, np.uint8)
    a, b, c = noise(rgb, 5.0, "tile_a"), noise(rgb, 5.0, "tile_a"), noise(rgb, 5.0, "tile_b")
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 3.0 < a.astype(float).std() < 7.0 and a.dtype == np.uint8


def test_blur_and_jpeg_keep_the_shape_and_soften_an_edge():
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, 16:] = 200
    for out in (blur(rgb, 2.0), jpeg(rgb, 70)):
        assert out.shape == rgb.shape and out.dtype == np.uint8
    blurred = blur(rgb, 2.0)
    assert 0 < blurred[5, 15, 0] < 200 and 0 < blurred[5, 16, 0] < 200  # the step is spread over its neighbours
    assert np.array_equal(blur(np.full((8, 8, 3), 77, np.uint8), 1.0), np.full((8, 8, 3), 77, np.uint8))


def test_make_writes_every_condition_skips_a_bad_tile_and_refuses_an_unknown_condition(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        save_png(tmp_path / "in" / f"{stem}.png", rng.integers(60, 250, (40, 36, 3), dtype=np.uint8))
    save_png(tmp_path / "in" / "tiny.png", np.full((8, 8, 3), 200, np.uint8))  # too small to be a tile: one line
    make(str(tmp_path / "in"), str(tmp_path / "out"), "jpeg_q70,noise_5")
    printed = capsys.readouterr().out
    assert "skipped:" in printed and "tiny.png" in printed and "2 tiles x 2 conditions" in printed
    assert "1 skipped" in printed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["jpeg_q70", "noise_5"]
    assert sorted(p.name for p in (tmp_path / "out" / "noise_5").iterdir()) == ["a.png", "b.png"]
    for cond in ("jpeg_q70", "noise_5"):
        for stem in ("a", "b"):
            img = load_rgb(tmp_path / "out" / cond / f"{stem}.png")
            src = load_rgb(tmp_path / "in" / f"{stem}.png")
            assert np.array_equal(img, CONDITIONS[cond](src, stem))
    with pytest.raises(SystemExit, match="unknown condition"):
        make(str(tmp_path / "in"), str(tmp_path / "out2"), "fog")


def _report(folder: Path, scores: dict[str, dict[str, float]]) -> None:
    """A harness-like ``results.csv``: method → tile → AJI (Dice and PQ set from it)."""
    folder.mkdir(parents=True)
    with open(folder / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "seed", "image", "dice", "aji", "pq"])
        for method, tiles in scores.items():
            for tile, aji in tiles.items():
                w.writerow([method, 0, tile, aji + 0.3, aji, aji - 0.05])


def test_table_gives_each_conditions_change_and_the_lead_over_the_baseline(tmp_path):
    root = tmp_path / "res"
    tiles = [f"t{i}" for i in range(6)]
    _report(root / "set" / "clean", {"lead": {t: 0.6 for t in tiles}, "base": {t: 0.5 for t in tiles}})
    _report(root / "set" / "blur_2px", {"lead": {t: 0.4 for t in tiles}, "base": {t: 0.45 for t in tiles}})
    assert table(str(root), "set", lead="lead", baseline="base") == str(root / "table.md")
    out = json.loads((root / "table.json").read_text())
    assert out["set"]["clean"]["lead"]["aji_change"] == pytest.approx(0.0)
    assert out["set"]["blur_2px"]["lead"]["aji_change"] == pytest.approx(-0.2)
    assert out["set"]["blur_2px"]["base"]["dice"] == pytest.approx(0.75)
    assert out["set"]["clean"]["lead_minus_baseline_aji"] == pytest.approx(0.1)
    assert out["set"]["blur_2px"]["lead_minus_baseline_aji"] == pytest.approx(-0.05)
    assert "jpeg_q70" not in out["set"]  # conditions without a report are left out
    md = (root / "table.md").read_text()
    assert "| blur_2px | " in md and "(-0.200)" in md
    with pytest.raises(SystemExit, match="no clean report"):
        table(str(root), "other")


def test_examples_draws_each_conditions_outlines_and_names_a_missing_run(tmp_path):
    rng = np.random.default_rng(1)
    save_png(tmp_path / "images" / "t.png", rng.integers(60, 250, (48, 40, 3), dtype=np.uint8))
    make(str(tmp_path / "images"), str(tmp_path / "perturbed"), "blur_1px")
    inst = np.zeros((48, 40), np.uint16)
    inst[10:20, 10:20] = 1
    for cond in ("clean", "blur_1px"):
        save_tiff(tmp_path / "runs" / cond / "ssimnet_shipped" / "seed0-abc" / "pred" / "t_inst.tif", inst)
    out = examples(
        str(tmp_path / "images"), str(tmp_path / "perturbed"), str(tmp_path / "runs"), "t", str(tmp_path / "ex.png")
    )
    assert Path(out).is_file() and Path(out).stat().st_size > 0
    make(str(tmp_path / "images"), str(tmp_path / "perturbed"), "noise_5")  # a condition with no run
    with pytest.raises(SystemExit, match="no ssimnet_shipped run for noise_5"):
        examples(
            str(tmp_path / "images"), str(tmp_path / "perturbed"), str(tmp_path / "runs"), "t", str(tmp_path / "x.png")
        )
