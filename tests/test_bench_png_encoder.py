"""The PNG-encoder benchmark: both encoders timed on every array kind of a tile, files checked, table written."""

import json

import numpy as np

from bench.png_encoder import pil_bytes, run
from labelfree.core.imageio import save_png, save_tiff


def test_both_encoders_on_overlay_mask_and_instances(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name in ("a", "b"):
        save_png(tmp_path / "images" / f"{name}.png", rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
        inst = np.zeros((48, 40), np.uint16)
        inst[5:15, 5:15], inst[20:30, 18:33] = 1, 2
        save_tiff(tmp_path / "labels" / f"{name}.tif", inst)
    result = run(str(tmp_path / "images"), str(tmp_path / "labels"), out=str(tmp_path / "out"), repeats=2)
    assert [(r["tile"], r["kind"]) for r in result["rows"]] == [
        (t, k) for t in ("a", "b") for k in ("overlay", "mask", "instances16")
    ]
    assert all(r["pil_seconds"] > 0 and r["own_seconds"] > 0 and r["own_bytes"] > 0 for r in result["rows"])
    table = (tmp_path / "out" / "png.md").read_text()
    assert "| overlay |" in table and "| instances16 |" in table
    assert json.loads((tmp_path / "out" / "png.json").read_text())["repeats"] == 2
    assert pil_bytes(np.zeros((4, 4), np.uint8)).startswith(b"\x89PNG")
