"""The harness's results.csv, written once and read back by every table that builds on it."""

import pytest

from bench.harness.results_csv import CSV_COLUMNS, read_one_method, read_results_csv, write_results_csv


def _row(method, seed, image, dice):
    return {"method": method, "seed": seed, "image": image, "dice": dice, "aji": dice / 2, "pq": dice / 3}


def test_rows_read_back_by_method_with_a_tiles_first_seed_unless_a_seed_is_named(tmp_path):
    path = tmp_path / "results.csv"
    write_results_csv([_row("a", 0, "t1", 0.8), _row("a", 1, "t1", 0.6), _row("b", 0, "t1", 0.5)], path)
    assert path.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    first = read_results_csv(path, ("dice", "aji"))
    assert first == {"a": {"t1": {"dice": 0.8, "aji": 0.4}}, "b": {"t1": {"dice": 0.5, "aji": 0.25}}}
    assert read_results_csv(path, ("dice",), seed=1) == {"a": {"t1": {"dice": 0.6}}}
    assert read_results_csv(path, ("dice",), seed=2) == {}


def test_one_methods_file_gives_its_tiles_and_a_mixed_file_is_refused(tmp_path):
    one, mixed = tmp_path / "one.csv", tmp_path / "mixed.csv"
    write_results_csv([_row("a", 0, "t1", 0.8), _row("a", 0, "t2", 0.7)], one)
    write_results_csv([_row("a", 0, "t1", 0.8), _row("b", 0, "t1", 0.5)], mixed)
    assert list(read_one_method(one, ("pq",))) == ["t1", "t2"]
    with pytest.raises(ValueError, match="one method's rows, found \\['a', 'b'\\]"):
        read_one_method(mixed, ("dice",))
