import pytest

from bench.by_magnification import group_means, run, tile_groups, tile_magnifications, um_per_pixel


def _rows():
    return [
        {"method": "m", "seed": "0", "image": "a", "dice": "0.8", "aji": "0.6", "pq": "0.5"},
        {"method": "m", "seed": "0", "image": "b", "dice": "0.6", "aji": "0.4", "pq": "0.3"},
        {"method": "m", "seed": "0", "image": "c", "dice": "0.9", "aji": "0.7", "pq": "0.7"},
    ]


def test_group_means_split_the_tiles_by_their_magnification():
    scores = {r["image"]: {k: float(r[k]) for k in ("dice", "aji", "pq")} for r in _rows()}
    groups = tile_groups(["c", "b", "a"], {"a": 20.0, "b": 20.0, "c": 40.0})
    assert groups == {"20x": ["a", "b"], "40x": ["c"], "all": ["a", "b", "c"]}
    means = group_means(scores, groups)
    assert means["20x"]["aji"] == pytest.approx(0.5)
    assert means["40x"]["dice"] == pytest.approx(0.9)
    assert means["all"]["pq"] == pytest.approx(0.5)


def test_a_tile_without_a_magnification_is_named():
    with pytest.raises(ValueError, match="no magnification for c"):
        tile_groups(["a", "b", "c"], {"a": 20.0, "b": 20.0})


def test_tile_magnifications_key_the_tiles_by_stem_and_name_the_missing_files(tmp_path):
    csv_path = tmp_path / "per_image.csv"
    csv_path.write_text("name,magnification\na,20x\nb,40x\n")
    assert tile_magnifications(csv_path, ["a.png", tmp_path / "b.tif"]) == {"a": 20.0, "b": 40.0}
    with pytest.raises(ValueError, match=r"no magnification in .*per_image.csv for c.png, d.tif$"):
        tile_magnifications(csv_path, ["a.png", "c.png", "d.tif"])
    assert um_per_pixel(40.0) == 0.25 and um_per_pixel(20.0) == 0.5


def test_run_reads_a_harness_results_csv_and_writes_its_table(tmp_path):
    import csv

    folder = tmp_path / "run"
    folder.mkdir()
    with open(folder / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(_rows()[0]))
        w.writeheader()
        w.writerows(_rows() + [{**_rows()[0], "method": "other", "aji": "0.0"}])
    (tmp_path / "per_image.csv").write_text("name,magnification\na,20x\nb,20x\nc,40x\n")
    result = run(str(folder), str(tmp_path / "per_image.csv"), "m", out=str(tmp_path / "out"))
    assert result[str(folder)]["20x"]["aji"] == pytest.approx(0.5)  # the other method's row is not counted
    assert "| 20x (2 tiles) | 40x (1 tiles) | all (3 tiles) |" in (tmp_path / "out" / "by_magnification.md").read_text()
    # FOLDER@NAME reads another method's rows from the same folder, as its own run
    both = run(f"{folder},{folder}@other", str(tmp_path / "per_image.csv"), "m")
    assert both[f"{folder}@other"]["20x"]["aji"] == pytest.approx(0.0) and both[str(folder)]["20x"]["aji"] == 0.5
