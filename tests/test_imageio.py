import os
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from labelfree.core.imageio import (
    InvalidImageError,
    as_rgb_uint8,
    atomic_path,
    atomic_paths,
    find_label,
    list_images,
    load_instance_map,
    load_rgb,
    png_bytes,
    save_text,
    write_png,
)


def rgb(h=64, w=48):
    return np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_channel_first_and_last_agree():
    a = rgb()
    assert np.array_equal(as_rgb_uint8(a), a)
    assert np.array_equal(as_rgb_uint8(a.transpose(2, 0, 1)), a)


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros((64, 64), np.uint8), "greyscale"),
        (np.zeros((64, 64, 1), np.uint8), "greyscale"),
        (np.zeros((10, 10, 3), np.uint8), "too small"),
        (np.full((64, 64, 3), np.nan, np.float32), "NaN"),
        (np.full((64, 64, 3), 300.0), "[0, 1] or [0, 255]"),
        (np.full((64, 64, 3), -1, np.int16), "[0, 255]"),
        (np.zeros((64, 64, 5), np.uint8), "channels"),
        (np.zeros((64, 64, 3), bool), "unsupported pixel type"),
    ],
)
def test_bad_arrays_name_the_problem(bad, words):
    with pytest.raises(InvalidImageError, match=words.replace("[", r"\[").replace("]", r"\]")):
        as_rgb_uint8(bad)


def test_documented_fallbacks():
    a = rgb()
    rgba = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    assert np.array_equal(as_rgb_uint8(rgba), a)
    assert np.array_equal(as_rgb_uint8(a.astype(np.uint16) * 257), a)
    assert np.array_equal(as_rgb_uint8(a / 255.0), a)
    rgba[0, 0, 3] = 10
    with pytest.raises(InvalidImageError, match="transparent"):
        as_rgb_uint8(rgba)


def test_files(tmp_path):
    a = rgb()
    Image.fromarray(a).save(tmp_path / "ok.png")
    assert np.array_equal(load_rgb(tmp_path / "ok.png"), a)
    tifffile.imwrite(tmp_path / "ok16.tif", a.astype(np.uint16) * 257)
    assert np.array_equal(load_rgb(tmp_path / "ok16.tif"), a)
    Image.fromarray(a[..., 0]).save(tmp_path / "grey.png")
    with pytest.raises(InvalidImageError, match="greyscale"):
        load_rgb(tmp_path / "grey.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(InvalidImageError, match="cannot be read"):
        load_rgb(tmp_path / "corrupt.png")
    with pytest.raises(FileNotFoundError):
        load_rgb(tmp_path / "missing.png")
    assert [p.name for p in list_images(tmp_path)] == ["corrupt.png", "grey.png", "ok.png", "ok16.tif"]


def test_instance_map_roundtrip(tmp_path):
    lab = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    Image.fromarray(lab).save(tmp_path / "lab.png")
    assert np.array_equal(load_instance_map(tmp_path / "lab.png"), lab)
    Image.fromarray(rgb()).save(tmp_path / "rgb.png")
    with pytest.raises(InvalidImageError, match="2D integer"):
        load_instance_map(tmp_path / "rgb.png")


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no images"):
        list_images(tmp_path)
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "nope")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done" and len(list(tmp_path.iterdir())) == 1


def test_save_text_replaces_the_file_in_utf8(tmp_path):
    target = tmp_path / "sub" / "table.md"
    assert save_text(target, "old") == target
    save_text(target, "Dice 0.741 ± 0.003\n")
    assert target.read_bytes() == "Dice 0.741 ± 0.003\n".encode("utf-8")
    assert [p.name for p in target.parent.iterdir()] == ["table.md"]  # no temporary file left beside it


def test_find_label_prefers_the_same_name_then_the_same_stem(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "a.tif").write_bytes(b"x")
    (tmp_path / "b.tif").write_bytes(b"x")
    assert find_label(tmp_path, "images/a.png") == tmp_path / "a.png"
    assert find_label(tmp_path, "images/b.png") == tmp_path / "b.tif"
    with pytest.raises(FileNotFoundError, match="no label map for c.png"):
        find_label(tmp_path, "images/c.png")


def test_sixteen_bit_data_is_scaled_by_its_real_depth(tmp_path):
    a = rgb()
    twelve = np.rint(a.astype(np.float64) * 4095 / 255).astype(np.uint16)  # 12-bit data in a 16-bit TIFF
    tifffile.imwrite(tmp_path / "c12.tif", twelve)
    with pytest.warns(UserWarning, match="read as 12-bit data"):
        assert np.array_equal(load_rgb(tmp_path / "c12.tif"), a)
    tifffile.imwrite(tmp_path / "c16.tif", a.astype(np.uint16) * 257)  # full 16-bit data: no warning, // 257
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(load_rgb(tmp_path / "c16.tif"), a)
    with pytest.warns(UserWarning, match="read as 8-bit data"):  # 8-bit values saved as 16 bit stay as they are
        assert np.array_equal(as_rgb_uint8(a.astype(np.uint16)), a)


def test_other_colour_models_and_empty_files_are_named(tmp_path):
    Image.fromarray(rgb()).convert("CMYK").save(tmp_path / "cmyk.jpg")
    with pytest.raises(InvalidImageError, match="a CMYK image; save it as RGB first"):
        load_rgb(tmp_path / "cmyk.jpg")
    tifffile.imwrite(tmp_path / "cmyk.tif", np.zeros((40, 40, 4), np.uint8), photometric="separated")
    with pytest.raises(InvalidImageError, match="CMYK"):
        load_rgb(tmp_path / "cmyk.tif")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InvalidImageError, match="empty file"):
        load_rgb(tmp_path / "empty.png")


def test_hidden_files_are_never_inputs(tmp_path):
    Image.fromarray(rgb()).save(tmp_path / "tile.png")
    Image.fromarray(rgb()).save(tmp_path / ".tile_inst.k2j3.png")  # a temporary an interrupted writer left
    assert [p.name for p in list_images(tmp_path)] == ["tile.png"]


def test_atomic_paths_is_all_or_nothing(tmp_path, monkeypatch):
    targets = [tmp_path / "a_seg.png", tmp_path / "a_inst.tif"]
    with atomic_paths(targets) as tmps:
        for t in tmps:
            t.write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_inst.tif", "a_seg.png"]
    for t in targets:
        t.unlink()
    real_replace, calls = os.replace, []

    def replace_then_die(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # interrupted between the renames
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        with atomic_paths(targets) as tmps:
            for t in tmps:
                t.write_text("new")
    assert list(tmp_path.iterdir()) == []  # the first file, already renamed, was taken back; no temporary left


def test_png_encoder_is_lossless_and_keeps_its_text(tmp_path):
    """The project's own PNG encoder (one fixed row filter, for speed): PIL reads every kind of array it writes back
    bit for bit, with the text chunks, Latin-1 or not; other arrays are refused by name."""
    rng = np.random.default_rng(0)
    arrays = {
        "rgb": rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),
        "grey": (rng.random((40, 31)) > 0.5).astype(np.uint8) * 255,
        "uint16": rng.integers(0, 65536, (9, 11), dtype=np.uint16),
        "rgba": rng.integers(0, 256, (4, 6, 4), dtype=np.uint8),
        "view": rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)[::2, 5:25],  # not contiguous
        "pixel": np.full((1, 1), 7, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_png(tmp_path / f"{name}.png", array, text={"classes": "nuclei", "note": "µm → px"})
        with Image.open(tmp_path / f"{name}.png") as im:
            np.testing.assert_array_equal(np.array(im), array, err_msg=name)
            assert im.info["classes"] == "nuclei" and im.info["note"] == "µm → px"
    for bad in (np.zeros((4, 4), bool), np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.uint16)):
        with pytest.raises((TypeError, ValueError), match="PNG output"):
            png_bytes(bad)
