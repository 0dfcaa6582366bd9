"""bench.reduced_magnification (a 40× set shown as 20×) and bench.stated_resolution's per-checkpoint options."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench import stated_resolution
from bench.by_magnification import magnifications
from bench.reduced_magnification import box_reduce, run, sample_labels
from labelfree.core.imageio import load_instance_map, load_rgb, save_png, save_tiff


def test_box_reduce_averages_each_block_and_crops_the_odd_side():
    img = np.zeros((5, 4, 3), dtype=np.uint8)
    img[0:2, 0:2] = (0, 100, 255)
    img[0, 0] = (3, 100, 255)  # block mean 0.75 -> rounds to 1
    img[2:4, 2:4] = 200
    img[4] = 255  # the fifth row has no pair: cropped
    out = box_reduce(img, 2)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [1, 100, 255]
    assert out[1, 1].tolist() == [200, 200, 200] and out[0, 1].tolist() == [0, 0, 0]


def test_sample_labels_keeps_ids_on_the_same_grid_and_drops_what_it_misses():
    inst = np.zeros((6, 6), dtype=np.uint16)
    inst[0:4, 0:4] = 7  # covers four grid points
    inst[5, 5] = 9  # never sampled (odd row and column)
    out = sample_labels(inst, 2)
    assert out.dtype == np.uint16 and out.shape == (3, 3)
    assert out.tolist() == [[7, 7, 0], [7, 7, 0], [0, 0, 0]]


def test_run_writes_the_reduced_set_and_a_per_image_table_the_benches_read(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (64, 70, 3), dtype=np.uint8)
    inst = np.zeros((64, 70), dtype=np.uint16)
    inst[20:30, 20:40] = 4
    save_png(tmp_path / "in" / "images" / "t1.png", rgb)
    save_tiff(tmp_path / "in" / "labels" / "t1.tif", inst)
    out = run(str(tmp_path / "in" / "images"), str(tmp_path / "in" / "labels"), str(tmp_path / "out"))
    small, small_inst = load_rgb(out / "images" / "t1.png"), load_instance_map(out / "labels" / "t1.tif")
    np.testing.assert_array_equal(small, box_reduce(rgb, 2))
    np.testing.assert_array_equal(small_inst, inst[::2, ::2])
    assert magnifications(out / "per_image.csv") == {"t1": 20.0}
    with pytest.raises(SystemExit, match="integer"):
        run(str(tmp_path / "in" / "images"), str(tmp_path / "in" / "labels"), str(tmp_path / "o2"), factor=1.5)


def test_stated_resolution_gives_both_arms_the_options_and_only_the_told_one_the_resolution(tmp_path, monkeypatch):
    """The harness is replaced by a recorder: each call's options are kept and a one-row result written."""
    for name in ("a", "b"):
        save_png(tmp_path / "images" / f"{name}.png", np.zeros((40, 40, 3), dtype=np.uint8))
        save_tiff(tmp_path / "labels" / f"{name}.tif", np.zeros((40, 40), dtype=np.uint16))
    (tmp_path / "per_image.csv").write_text("name,magnification\na,20x\nb,40x\n")
    calls = []

    def fake_compare(images, labels, methods, seeds, out, options, runs):
        calls.append((Path(out).name, options))
        Path(out).mkdir(parents=True)
        with open(Path(out) / "results.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["method", "image", "dice", "aji", "pq"])
            for p in sorted(Path(images).iterdir()):
                writer.writerow([methods, p.stem, 0.5, 0.4, 0.3])

    monkeypatch.setattr(stated_resolution, "compare", fake_compare)
    opts = {"ckpt_path": "m.pt"}
    stated_resolution.run(
        str(tmp_path / "images"),
        str(tmp_path / "labels"),
        str(tmp_path / "per_image.csv"),
        out=str(tmp_path / "out"),
        options=json.dumps(opts),
    )
    got = dict(calls)
    assert got["20x_untold"] == {"ssimnet_shipped": opts}
    assert got["20x_told"] == {"ssimnet_shipped": {"ckpt_path": "m.pt", "input_mpp": 0.5}}
    assert got["40x_told"] == {"ssimnet_shipped": {"ckpt_path": "m.pt", "input_mpp": 0.25}}
    report = (tmp_path / "out" / "stated_resolution.md").read_text()
    assert '--options \'{"ckpt_path": "m.pt"}\'' in report
    # without options the untold arm runs the method's defaults, as before
    calls.clear()
    stated_resolution.run(
        str(tmp_path / "images"), str(tmp_path / "labels"), str(tmp_path / "per_image.csv"), out=str(tmp_path / "o")
    )
    assert dict(calls)["20x_untold"] == {}
