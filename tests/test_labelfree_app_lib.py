"""The MONAI Label app's own code that does not need monailabel: tile reading, instance contours, bundle copies.

The server itself is tested in ``test_monailabel_app.py`` (label environment only).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.draw import polygon as draw_polygon

from labelfree.core.imageio import InvalidImageError
from labelfree.core.metrics import pixel_scores
from labelfree.sample import sample_pairs

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "apps" / "labelfree"


@pytest.fixture(scope="module")
def app_lib():
    sys.path.insert(0, str(APP))
    try:
        import lib.bundles
        import lib.transforms

        yield lib
    finally:
        sys.path.remove(str(APP))


def _raster(poly, shape):
    xy = np.asarray(poly)
    mask = np.zeros(shape, bool)
    rr, cc = draw_polygon(xy[:, 1], xy[:, 0], shape)
    mask[rr, cc] = True
    return mask


def test_one_polygon_per_instance_even_when_nuclei_touch(app_lib):
    inst = np.zeros((64, 80), np.int32)
    yy, xx = np.mgrid[:64, :80]
    inst[(yy - 20) ** 2 + (xx - 20) ** 2 < 100] = 1
    inst[20:34, 30:44] = 2  # touches nucleus 1 along a whole side
    inst[50:64, 60:80] = 3  # cut by the tile corner
    inst[2:4, 70:72] = 4  # 4 pixels: dropped by min_area
    polys = app_lib.transforms.instance_polygons(inst, min_area=10)
    assert len(polys) == 3
    for idx, poly in zip((1, 2, 3), polys):
        truth = inst == idx
        drawn = _raster(poly, inst.shape)
        assert pixel_scores(truth, drawn)["dice"] > 0.9
        assert (drawn & ~truth & (inst > 0)).sum() < 0.1 * truth.sum()  # does not spill into the neighbour


def test_contours_are_in_level0_slide_coordinates(app_lib):
    inst = np.zeros((1, 40, 40), np.int32)
    inst[0, 10:20, 10:20] = 1
    inst[0, 25:35, 5:15] = 2
    data = {"inst": torch.from_numpy(inst), "location": [1000, 2000], "downsample": 2.0, "min_poly_area": 50}
    out = app_lib.transforms.InstanceContoursd(keys="inst")(data)
    ann = out["result"]["annotation"]
    assert ann["location"] == [1000, 2000] and ann["size"] == [80, 80]
    (element,) = ann["elements"]
    assert element["label"] == "Nuclei" and len(element["contours"]) == 2
    xs = np.array([p[0] for c in element["contours"] for p in c])
    ys = np.array([p[1] for c in element["contours"] for p in c])
    assert xs.min() >= 1000 + 2 * 4.5 and xs.max() <= 1000 + 2 * 20 and ys.min() >= 2000 + 2 * 9.5
    out = app_lib.transforms.InstanceContoursd(keys="inst")({**data, "min_poly_area": 101})
    assert out["result"]["annotation"]["elements"] == []  # both nuclei are 100 pixels


def test_load_tile_from_arrays_and_files_with_clear_errors(app_lib, tmp_path):
    load = app_lib.transforms.LoadTiled(keys="image")
    image, _ = sample_pairs()[0]
    rgb = np.asarray(Image.open(image).convert("RGB"))
    from_path = load({"image": str(image)})["image"]
    assert from_path.shape == (3, 512, 512) and from_path.dtype == torch.uint8
    assert torch.equal(load({"image": rgb})["image"], from_path)
    assert torch.equal(load({"image": rgb.transpose(2, 0, 1).copy()})["image"], from_path)
    grey = tmp_path / "grey.png"
    Image.fromarray(rgb[..., 0]).save(grey)
    with pytest.raises(InvalidImageError):
        load({"image": str(grey)})
    flat_tif = tmp_path / "tile.tif"  # a plain TIFF tile is read whole, OpenSlide or not
    import tifffile

    tifffile.imwrite(flat_tif, rgb)
    assert torch.equal(load({"image": str(flat_tif), "location": [0, 0], "size": [2048, 2048]})["image"], from_path)


def test_image_side_reads_headers_and_rejects_unknown_files(app_lib, tmp_path):
    image, _ = sample_pairs()[0]
    assert app_lib.transforms.image_side(image) == 512
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"not a png")
    assert app_lib.transforms.image_side(bad) is None


@pytest.mark.skipif(importlib.util.find_spec("openslide") is None, reason="openslide is installed with the label extra")
def test_load_tile_reads_the_requested_slide_region(app_lib, tmp_path):
    import tifffile

    image, _ = sample_pairs()[0]
    rgb = np.asarray(Image.open(image).convert("RGB"))
    slide = np.full((1024, 1024, 3), 255, np.uint8)
    slide[:512, 512:] = rgb
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, slide, tile=(256, 256), photometric="rgb")
    out = app_lib.transforms.LoadTiled(keys="image")({"image": str(path), "location": [512, 0], "size": [512, 512]})
    assert torch.equal(out["image"], torch.from_numpy(rgb.transpose(2, 0, 1).copy()))
    assert out["downsample"] == 1.0


def test_bundles_are_copied_once_and_refreshed_on_a_new_version(app_lib, tmp_path):
    src = tmp_path / "bundles"
    shutil.copytree(REPO / "bundles" / "dcgn", src / "dcgn", ignore=shutil.ignore_patterns("eval", "models"))
    (src / "dcgn" / "eval").mkdir()
    model_dir = tmp_path / "served"
    out = app_lib.bundles.prepare_bundles(src, model_dir, ["dcgn"])
    assert out == {"dcgn": model_dir / "dcgn"} and (model_dir / "dcgn" / "configs" / "inference.json").is_file()
    assert not (model_dir / "dcgn" / "eval").exists()
    marker = model_dir / "dcgn" / "trained_here"
    marker.write_text("x")
    app_lib.bundles.prepare_bundles(src, model_dir, ["dcgn"])
    assert marker.exists()  # same version: the served copy (and anything trained into it) is kept
    meta = src / "dcgn" / "configs" / "metadata.json"
    old = json.loads(meta.read_text())["version"]
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "version": "9.9.9"}))
    app_lib.bundles.prepare_bundles(src, model_dir, ["dcgn"])
    assert not marker.exists() and (model_dir / f"dcgn.v{old}" / "trained_here").exists()


def test_unknown_bundle_is_refused_with_the_available_names(app_lib, tmp_path):
    with pytest.raises(ValueError, match="available bundles are dcgn, ssimnet"):
        app_lib.bundles.prepare_bundles(REPO / "bundles", tmp_path, ["hovernet"])
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(importlib.util.find_spec("openslide") is None, reason="openslide is not installed")
def test_slide_tiles_read_with_context_keep_each_nucleus_once(app_lib, tmp_path):
    """MONAI Label cuts a slide into tiles without overlap; with ``tile_margin`` each tile is read with context and
    keeps only the nuclei whose centroid lies in its core, so a nucleus on a seam comes back once and whole."""
    import tifffile

    slide = np.full((512, 512, 3), 240, np.uint8)
    yy, xx = np.mgrid[:512, :512]
    disc = (yy - 100) ** 2 + (xx - 254) ** 2 < 15**2  # straddles the seam at x = 256
    slide[disc] = (90, 60, 140)
    path = tmp_path / "seam.tif"
    tifffile.imwrite(path, slide, tile=(256, 256), photometric="rgb")
    load = app_lib.transforms.LoadTiled(keys="image")
    contours = app_lib.transforms.InstanceContoursd(keys="inst", min_poly_area=10)
    found = []
    for x in (0, 256):
        d = load({"image": str(path), "location": [x, 0], "size": [256, 512], "tile_margin": 64})
        rgb = d["image"].numpy().transpose(1, 2, 0)
        inst = (rgb.mean(axis=-1) < 150).astype(np.int32)  # the stand-in network: one object per tile
        d["inst"] = torch.from_numpy(inst)[None]
        ann = contours(d)["result"]["annotation"]
        assert ann["location"] == [x, 0] and ann["size"] == [256, 512]
        found += [np.asarray(c) for e in ann["elements"] for c in e["contours"]]
    assert len(found) == 1  # kept by the left tile (centroid x = 254), dropped by the right one
    assert _raster(found[0] - 0.5, (512, 512)).sum() == pytest.approx(disc.sum(), rel=0.03)
