"""The equal-masks check of the speed benchmark: identical maps, a changed pixel and a renumbering told apart."""

import numpy as np
import pytest

from bench.same_masks import compare, run
from labelfree.core.imageio import save_tiff


def _write(folder, name, array):
    (folder / "seed0" / "pred").mkdir(parents=True, exist_ok=True)
    save_tiff(folder / "seed0" / "pred" / f"{name}_inst.tif", array.astype(np.uint16))


def test_identical_changed_and_renumbered_tiles(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    inst = np.zeros((20, 20), np.uint16)
    inst[2:6, 2:6], inst[10:15, 10:15] = 1, 2
    _write(a, "same", inst)
    _write(b, "same", inst)
    grown = inst.copy()
    grown[6, 2] = 1  # one more nucleus pixel
    _write(a, "grown", inst)
    _write(b, "grown", grown)
    _write(a, "renumbered", inst)
    _write(b, "renumbered", np.where(inst > 0, 3 - inst, 0))  # the same mask, ids swapped
    rows = {r["tile"]: r for r in compare(str(a), str(b))}
    assert rows["same"]["identical"] and rows["same"]["mask_pixels_changed"] == 0
    assert not rows["grown"]["identical"] and rows["grown"]["mask_pixels_changed"] == 1
    assert not rows["renumbered"]["identical"] and rows["renumbered"]["mask_pixels_changed"] == 0
    assert rows["renumbered"]["instances_a"] == rows["renumbered"]["instances_b"] == 2
    text = run(str(a), str(b), out=str(tmp_path / "same.md"))
    assert "1 of 3 tiles identical; largest mask difference 1 pixels" in text
    assert (tmp_path / "same.md").read_text() == text


def test_a_tile_in_one_folder_only_is_an_error(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "x", np.ones((4, 4)))
    _write(a, "y", np.ones((4, 4)))
    _write(b, "x", np.ones((4, 4)))
    with pytest.raises(SystemExit, match="one folder only: y_inst.tif"):
        compare(str(a), str(b))
