"""Whole slides: reading (OME-TIFF through tifffile, generic tiled TIFF through OpenSlide), tissue detection, the
window-aligned tile grid, stitching, exact level-0 outlines, streamed and resumable GeoJSON, cohorts."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.draw import polygon as draw_polygon

from labelfree.core.demo_slide import GLASS_RGB, write_demo_slide
from labelfree.core.geojson import CsvStream, FeatureStream, detection_feature
from labelfree.core.imageio import list_images, load_rgb
from labelfree.engines.slides import SlideSettings, list_slides, run_slides, segment_slide
from labelfree.sample import sample_dir
from labelfree.transforms.slide_tiles import aligned_tiling, instance_polygons, tile_grid, tile_nuclei, TileSpec
from labelfree.transforms.slide_tissue import SlideTissueMask, slide_tissue_mask
from labelfree.transforms.wsi_reader import SlideError, open_slide, slide_thumbnail

REPO = Path(__file__).resolve().parents[1]

#: QuPath detection features as this project writes them (checked with jsonschema)
FEATURE_SCHEMA = {
    "type": "object",
    "required": ["type", "id", "geometry", "properties"],
    "properties": {
        "type": {"const": "Feature"},
        "id": {"type": "string"},
        "geometry": {
            "type": "object",
            "required": ["type", "coordinates"],
            "properties": {
                "type": {"const": "Polygon"},
                "coordinates": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "array",
                        "minItems": 4,
                        "items": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number"}},
                    },
                },
            },
        },
        "properties": {
            "type": "object",
            "required": ["objectType", "classification", "measurements"],
            "properties": {
                "objectType": {"const": "detection"},
                "classification": {"type": "object", "required": ["name", "color"]},
                "measurements": {
                    "type": "object",
                    "required": [
                        "Area µm^2",
                        "Centroid X µm",
                        "Centroid Y µm",
                        "Hematoxylin OD mean",
                        "Eccentricity",
                    ],
                    "additionalProperties": {"type": "number"},
                },
            },
        },
    },
}


@pytest.fixture(scope="module")
def sample_tiles():
    return [load_rgb(p) for p in list_images(sample_dir() / "images")]


def _dark_blob_segmenter(rgb: np.ndarray, name: str = "") -> np.ndarray:
    """A stand-in for a bundle whose objects are the same wherever a tile starts, if tiles start on multiples of 30:
    dark pixels, cut along a 30 px lattice (so no object is wider than a tile's margin), labelled."""
    from scipy import ndimage

    mask = rgb.astype(np.float32).mean(axis=-1) < 120
    mask[::30] = False
    mask[:, ::30] = False
    mask = ndimage.binary_opening(mask, iterations=1)
    lab, _ = ndimage.label(mask)
    return lab.astype(np.int32)


class _SplitSegmenter:
    """The stand-in with the bundle segmenter's two halves, so the slide runs post-processing in its worker thread
    (as it does when the network is on a GPU)."""

    device = torch.device("cuda")

    def network_pass(self, rgb: np.ndarray, name: str = "") -> dict:
        return {"rgb": rgb}

    def postprocess(self, d: dict) -> np.ndarray:
        return _dark_blob_segmenter(d["rgb"])

    def __call__(self, rgb: np.ndarray, name: str = "") -> np.ndarray:
        return self.postprocess(self.network_pass(rgb))


def _raster(features, shape) -> np.ndarray:
    lab = np.zeros(shape, np.int32)
    for i, f in enumerate(features, 1):
        ring = np.asarray(f["geometry"]["coordinates"][0])
        rr, cc = draw_polygon(ring[:, 1] - 0.5, ring[:, 0] - 0.5, shape)  # pixel centres sit at +0.5
        lab[rr, cc] = i
    return lab


# reading ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout,backend", [("ome", "tifffile"), ("generic", "openslide")])
def test_slides_are_read_exactly_at_every_level(tmp_path, sample_tiles, layout, backend):
    tile = sample_tiles[0]
    path = write_demo_slide(tmp_path / f"s.{layout}.tif", 1300, 900, [(300, 200, tile)], mpp=0.5, layout=layout)
    with open_slide(path) as slide:
        assert slide.backend == backend
        assert slide.mpp == pytest.approx((0.5, 0.5))
        assert slide.sizes == [(1300, 900), (650, 450), (325, 225)]
        assert slide.level_mpp(1) == pytest.approx(1.0)
        np.testing.assert_array_equal(slide.read(0, 300, 200, tile.shape[1], tile.shape[0]), tile)
        half = tile.reshape(256, 2, 256, 2, 3).mean(axis=(1, 3)).round()
        assert np.abs(slide.read(1, 150, 100, 256, 256).astype(float) - half).max() <= 1
        outside = slide.read(0, -20, -20, 40, 40)  # beyond the slide: white glass
        assert (outside[:20, :20] == 255).all() and (outside[30:, 30:] == GLASS_RGB).all()


def test_both_backends_read_the_same_pixels(tmp_path, sample_tiles):
    path = write_demo_slide(tmp_path / "g.tif", 900, 700, [(100, 50, sample_tiles[1])], layout="generic")
    with open_slide(path, backend="openslide") as a, open_slide(path, backend="tifffile") as b:
        np.testing.assert_array_equal(a.read(0, 90, 40, 333, 271), b.read(0, 90, 40, 333, 271))
        np.testing.assert_array_equal(a.read(2, 10, 5, 100, 90), b.read(2, 10, 5, 100, 90))


def test_thumbnail_is_read_in_chunks_and_equals_a_direct_reduction(tmp_path, sample_tiles):
    path = write_demo_slide(tmp_path / "t.ome.tif", 1024, 768, [(0, 0, sample_tiles[2])], mpp=0.25, levels=1)
    with open_slide(path) as slide:
        thumb, scale = slide_thumbnail(slide, mpp=1.0, chunk=96)  # many chunks
        full = slide.read(0, 0, 0, 1024, 768)
    assert scale == 4 and thumb.shape == (192, 256, 3)
    direct = full.reshape(192, 4, 256, 4, 3).mean(axis=(1, 3), dtype=np.float32).round()
    np.testing.assert_array_equal(thumb, direct)


def test_unreadable_and_resolution_free_slides_fail_in_one_line(tmp_path, sample_tiles):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"not a slide")
    with pytest.raises(SlideError, match="broken.svs: not a slide"):
        open_slide(bad)
    bare = write_demo_slide(tmp_path / "bare.ome.tif", 600, 600, [(0, 0, sample_tiles[0])], mpp=None)
    with pytest.raises(SlideError, match="no microns per pixel; pass --mpp"):
        segment_slide(bare, tmp_path / "out", _dark_blob_segmenter, SlideSettings(), progress=False)
    assert not (tmp_path / "out" / "bare.geojson").exists()
    summary = segment_slide(bare, tmp_path / "out", _dark_blob_segmenter, SlideSettings(mpp=0.25), progress=False)
    assert summary["level0_mpp"] == [0.25, 0.25] and summary["nuclei"] > 0


# tissue ------------------------------------------------------------------------------------------------------------


def test_tissue_mask_keeps_stain_and_drops_glass_black_border_and_pen(sample_tiles):
    thumb = np.empty((120, 200, 3), np.uint8)
    thumb[:] = GLASS_RGB
    thumb[30:90, 60:120] = sample_tiles[0][::8, ::8][:60, :60]  # tissue
    thumb[:, :8] = 10  # black scanner border
    thumb[100:106, 130:190] = (40, 120, 60)  # green marker
    thumb[10:14, 150:190] = (60, 80, 190)  # blue marker
    mask = slide_tissue_mask(thumb)
    assert mask[35:85, 65:115].mean() > 0.95
    assert not mask[:, :8].any() and not mask[100:106, 135:185].any() and not mask[10:14, 155:185].any()
    assert not mask[:25, 20:50].any()  # glass
    out = SlideTissueMask()(thumb.transpose(2, 0, 1))
    assert out.shape == (1, 120, 200) and out.dtype == bool


# grid and stitching --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "width,height,tile,margin", [(1000, 700, 300, 50), (256, 256, 640, 128), (2000, 333, 640, 128)]
)
def test_tile_cores_partition_the_slide_and_tiles_hold_their_cores(width, height, tile, margin):
    tiles = tile_grid(width, height, tile, margin)
    count = np.zeros((height, width), np.int32)
    for t in tiles:
        x0, y0, x1, y1 = t.core
        count[y0:y1, x0:x1] += 1
        assert t.x <= x0 and t.y <= y0 and t.x + t.w >= x1 and t.y + t.h >= y1
        assert t.w <= tile and t.h <= tile and t.x % (tile - 2 * margin) == 0
        # context on each inner side of the core
        assert x0 == 0 or x0 - t.x >= margin
        assert x1 == width or t.x + t.w - x1 >= margin
    assert (count == 1).all()


def test_tiles_without_tissue_are_left_out():
    mask = np.zeros((10, 10), bool)
    mask[0, 0] = True  # tissue only in the first 100x100 level pixels
    tiles = tile_grid(1000, 1000, 300, 50, tissue=mask, tissue_scale=100)
    assert [t.index for t in tiles] == [0]


@pytest.mark.parametrize("tile,margin", [(1600, 128), (1000, 100), (640, 96)])
def test_aligned_tiling_puts_every_window_on_one_grid(tile, margin):
    roi, step = 256, 192
    t, m = aligned_tiling(tile, margin, roi, step)
    assert m >= margin and (t - 2 * m) % step == 0 and (t - roi) % step == 0
    assert abs(t - tile) <= 2 * step + 2 * step


def test_outlines_fill_back_to_exactly_the_instances_in_level0_pixels():
    from skimage.draw import ellipse

    inst = np.zeros((90, 120), np.int32)
    for i, (r, c, a, b) in enumerate([(20, 20, 9, 6), (22, 35, 8, 8), (60, 80, 15, 7), (85, 115, 6, 6)], 1):
        rr, cc = ellipse(r, c, a, b, inst.shape)
        inst[rr, cc] = i
    rgb = np.full(inst.shape + (3,), 230, np.uint8)
    rgb[inst > 0] = (90, 60, 140)
    polys = dict(instance_polygons(inst))
    assert sorted(polys) == [1, 2, 3, 4]
    features = [detection_feature(polys[i], "Nucleus", (0, 255, 0), {}) for i in sorted(polys)]
    drawn = _raster(features, inst.shape)
    # pixel-exact but for diagonal corners where two touching nuclei meet (marching squares' ambiguous saddles)
    assert (drawn != inst).sum() <= 10
    for i in range(1, 5):
        assert 2 * ((drawn == i) & (inst == i)).sum() / ((drawn == i).sum() + (inst == i).sum()) > 0.97
    # a tile read at level 1 (2 level-0 px per pixel) from level (x, y) = (50, 30): outlines in level-0 pixels
    spec = TileSpec(0, 50, 30, 120, 90, (50, 30, 170, 120))
    nuc = tile_nuclei(inst, rgb, spec, (1.0, 1.0), 2.0, (0.25, 0.25))
    assert list(nuc.ids) == [1, 2, 3, 4]
    big = np.kron(inst, np.ones((2, 2), np.int32))
    canvas = _raster([detection_feature(p - [100, 60], "N", (0, 0, 0), {}) for p in nuc.polygons], big.shape)
    assert (canvas > 0).sum() == pytest.approx((big > 0).sum(), rel=0.05)
    assert 2 * ((canvas > 0) & (big > 0)).sum() / ((canvas > 0).sum() + (big > 0).sum()) > 0.97
    rr, cc = np.nonzero(inst == 3)
    assert nuc.centroid[2] == pytest.approx([100 + 2 * (cc.mean() + 0.5), 60 + 2 * (rr.mean() + 0.5)])
    assert nuc.area_um2[2] == pytest.approx(len(rr) * 0.5 * 0.5)
    assert nuc.eccentricity[1] < 0.2 < nuc.eccentricity[2]  # the disc is round, the 15x7 ellipse is not
    assert (nuc.haematoxylin > 0.05).all()


def test_glass_objects_and_objects_outside_the_core_are_dropped():
    inst = np.zeros((100, 100), np.int32)
    inst[10:20, 10:20] = 1  # nucleus in the core
    inst[40:90, 40:90] = 2  # "nucleus" on glass
    inst[2:8, 92:99] = 3  # centroid outside the core
    rgb = np.full((100, 100, 3), 238, np.uint8)
    rgb[10:20, 10:20] = (80, 50, 130)
    rgb[2:8, 92:99] = (80, 50, 130)
    nuc = tile_nuclei(inst, rgb, TileSpec(0, 0, 0, 100, 100, (0, 0, 90, 100)), (1.0, 1.0), 1.0, (0.25, 0.25))
    assert list(nuc.ids) == [1]


# streams --------------------------------------------------------------------------------------------------------------


def test_feature_stream_is_atomic_valid_and_resumes_by_truncating(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    path = tmp_path / "a.geojson"
    ring = np.array([[0, 0], [4, 0], [4, 3], [0, 3]], float)
    meas = {"Area µm^2": 1, "Centroid X µm": 0.5, "Centroid Y µm": 0.4, "Hematoxylin OD mean": 0.2, "Eccentricity": 0.3}
    s = FeatureStream(path)
    s.add(detection_feature(ring, "Nucleus", (0, 255, 0), meas, "id-1"))
    state = s.checkpoint()
    s.add(detection_feature(ring + 1, "Nucleus", (0, 255, 0), meas, "id-lost"))  # after the checkpoint: lost
    s.abandon()
    assert not path.exists()  # nothing under the final name until the stream is closed
    s = FeatureStream(path, resume=state)
    s.add(detection_feature(ring + 2, "Nucleus", (0, 255, 0), meas, "id-2"))
    s.close()
    doc = json.loads(path.read_text())
    assert [f["id"] for f in doc["features"]] == ["id-1", "id-2"]
    for f in doc["features"]:
        jsonschema.validate(f, FEATURE_SCHEMA)
        assert f["geometry"]["coordinates"][0][0] == f["geometry"]["coordinates"][0][-1]  # closed ring
    c = CsvStream(tmp_path / "t.csv", ["a", "b"])
    c.add({"a": 1, "b": "x,y"})
    c.close()
    assert (tmp_path / "t.csv").read_text() == 'a,b\n1,"x,y"\n'


# whole slides --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("segmenter", [_dark_blob_segmenter, _SplitSegmenter()], ids=["serial", "threaded"])
def test_a_killed_slide_run_resumes_to_the_same_bytes(tmp_path, sample_tiles, segmenter):
    places = [(0, 0, sample_tiles[0]), (400, 200, sample_tiles[1])]
    path = write_demo_slide(tmp_path / "k.ome.tif", 912, 712, places, mpp=0.25)
    settings = SlideSettings(tile=400, margin=64, checkpoint_every=2)
    full = segment_slide(path, tmp_path / "full", _dark_blob_segmenter, settings, progress=False)
    assert full["tiles"] >= 6 and full["nuclei"] > 50
    with pytest.raises(KeyboardInterrupt):
        segment_slide(path, tmp_path / "kill", segmenter, settings, progress=False, stop_after=3)
    assert (tmp_path / "kill" / "k.slide-state.json").is_file() and not (tmp_path / "kill" / "k.geojson").exists()
    resumed = segment_slide(path, tmp_path / "kill", segmenter, settings, progress=False)
    assert resumed["nuclei"] == full["nuclei"]
    for name in ("k.geojson", "k_nuclei.csv", "k_overlay.png"):
        assert (tmp_path / "kill" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    assert not (tmp_path / "kill" / "k.slide-state.json").exists()
    # a state whose part files are gone starts the slide again instead of skipping the tiles it names
    with pytest.raises(KeyboardInterrupt):
        segment_slide(path, tmp_path / "lost", segmenter, settings, progress=False, stop_after=3)
    (tmp_path / "lost" / "k.geojson.part").unlink()
    segment_slide(path, tmp_path / "lost", segmenter, settings, progress=False)
    assert (tmp_path / "lost" / "k.geojson").read_bytes() == (tmp_path / "full" / "k.geojson").read_bytes()


def test_stitched_slide_equals_one_pass_for_a_local_segmenter(tmp_path, sample_tiles):
    mosaic = np.concatenate(sample_tiles[:2], axis=1)  # 512 x 1024 of real tissue
    path = write_demo_slide(tmp_path / "m.ome.tif", mosaic.shape[1], mosaic.shape[0], [(0, 0, mosaic)], mpp=0.25)
    segment_slide(
        path, tmp_path, _dark_blob_segmenter, SlideSettings(tile=300, margin=60, overlay=False), progress=False
    )
    feats = json.loads((tmp_path / "m.geojson").read_text())["features"]
    single = _dark_blob_segmenter(mosaic)
    nuc = tile_nuclei(single, mosaic, TileSpec(0, 0, 0, 1024, 512, (0, 0, 1024, 512)), (1, 1), 1.0, (0.25, 0.25))
    drawn = _raster(feats, single.shape)
    kept = np.isin(single, nuc.ids)
    assert len(feats) == len(nuc.ids)
    got = sorted(
        (f["properties"]["measurements"]["Centroid X µm"], f["properties"]["measurements"]["Centroid Y µm"])
        for f in feats
    )
    want = sorted((round(x * 0.25, 4), round(y * 0.25, 4)) for x, y in nuc.centroid)
    np.testing.assert_allclose(got, want, atol=1e-3)  # the same nuclei, each once
    # outlines leave holes out: the drawn nuclei are the kept ones, holes filled
    assert ((drawn > 0) & ~kept).sum() < 0.01 * kept.sum() and (kept & ~(drawn > 0)).sum() == 0


def test_ssimnet_slide_matches_single_image_inference(tmp_path, sample_tiles):
    """The shipped SSimNet on a slide made of the sample tiles, cut into 640 px tiles (seams through the tissue), vs
    the same pixels segmented as one image."""
    from labelfree.engines.slides import BundleTileSegmenter

    seg = BundleTileSegmenter(REPO / "bundles" / "ssimnet", device="cpu")
    roi, step = seg.window
    mosaic = np.concatenate(sample_tiles, axis=1)[: roi + step, : roi + 4 * step]  # sides on one window grid
    path = write_demo_slide(tmp_path / "s.ome.tif", mosaic.shape[1], mosaic.shape[0], [(0, 0, mosaic)], mpp=0.25)
    summary = segment_slide(path, tmp_path, seg, SlideSettings(tile=880, margin=128, table=False), progress=False)
    assert summary["tiles"] == 3  # 752 px tiles (aligned to the window grid) on a stride of 496: two seams
    single = seg(mosaic)
    feats = json.loads((tmp_path / "s.geojson").read_text())["features"]
    drawn = _raster(feats, single.shape) > 0
    n_single = len(np.unique(single)) - 1
    # the re-split of irregular objects (0.3.2) and the small-object drop (0.8.0) compare each object with its own
    # tile's median, and a slide tile's median (over its context margin too, where nuclei are cut) is not the whole
    # mosaic's: a few objects are split or kept on one side and not the other (the mask agrees, below). Measured: 15 of
    # 356 objects with the tile's own colours, 20 of 353 with 0.10.0's stain view read with the slide's stains, 31 of
    # 349 with the 0.11.0 checkpoint, which cuts the HE-7128 crop's small nuclei into more objects near a quarter of
    # the mosaic's median (without the small-object drop both give the same 396 objects), 29 of 354 with 0.12.0's
    assert abs(len(feats) - n_single) <= max(1, 0.1 * n_single)
    assert 2 * (drawn & (single > 0)).sum() / (drawn.sum() + (single > 0).sum()) >= 0.99


def test_cohort_skips_finished_slides_and_reports_failures(tmp_path, sample_tiles, monkeypatch, capsys):
    import labelfree.engines.slides as slides

    folder = tmp_path / "slides"
    write_demo_slide(folder / "a.ome.tif", 600, 600, [(0, 0, sample_tiles[0])], mpp=0.25)
    write_demo_slide(folder / "b.ome.tif", 600, 600, [(50, 50, sample_tiles[1])], mpp=0.25)
    (folder / "c.svs").write_bytes(b"garbage")
    (folder / "notes.txt").write_text("not a slide")
    assert [p.name for p in list_slides(folder)] == ["a.ome.tif", "b.ome.tif", "c.svs"]
    monkeypatch.setattr(slides, "BundleTileSegmenter", lambda *a, **k: _dark_blob_segmenter)
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        run_slides(folder, out, REPO / "bundles" / "ssimnet")
    assert "FAILED" in capsys.readouterr().err
    assert (out / "a.geojson").is_file() and (out / "b.geojson").is_file()
    assert "c.svs" in (out / "failures.csv").read_text()
    (folder / "c.svs").unlink()
    before = (out / "a.json").stat().st_mtime_ns
    result = run_slides(folder, out, REPO / "bundles" / "ssimnet")
    assert len(result["skipped"]) == 2 and (out / "a.json").stat().st_mtime_ns == before
    assert not (out / "failures.csv").exists()


@pytest.mark.slow
def test_cohort_runs_across_two_torchrun_processes(tmp_path, sample_tiles):
    folder = tmp_path / "slides"
    for i in range(3):
        write_demo_slide(folder / f"s{i}.ome.tif", 520, 520, [(4, 4, sample_tiles[i])], mpp=0.25)
    (folder / "bad.svs").write_bytes(b"garbage")
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "labelfree",
        "slide",
        str(folder),
        "--output",
        str(out),
        "--threads",
        "1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode != 0  # one slide failed
    assert sorted(p.name for p in out.glob("*.geojson")) == ["s0.geojson", "s1.geojson", "s2.geojson"]
    assert "bad.svs" in (out / "failures.csv").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("bundle", ["ssimnet", "dcgn"])
def test_inference_wsi_config_segments_a_folder_of_slides(tmp_path, sample_tiles, bundle):
    folder = tmp_path / "slides"
    write_demo_slide(folder / "one.tif", 700, 600, [(100, 50, sample_tiles[2])], mpp=0.25, layout="generic")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        f"bundles/{bundle}/configs/inference_wsi.json",
        "--dataset_dir",
        str(folder),
        "--output_dir",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "one.geojson").read_text())
    assert len(doc["features"]) > 20
    assert json.loads((out / "one.json").read_text())["backend"] == "openslide"
    shutil.rmtree(out)


def test_inference_wsi_finds_its_bundle_from_anywhere(tmp_path, monkeypatch):
    from labelfree.bundle_paths import locate_bundle
    from labelfree.engines.runs import RunError

    monkeypatch.chdir(tmp_path)  # not a bundle folder: the repository's bundle
    assert Path(locate_bundle(".", "ssimnet")) == REPO / "bundles" / "ssimnet"
    assert Path(locate_bundle(REPO / "bundles" / "dcgn", "dcgn")) == REPO / "bundles" / "dcgn"
    zoo = tmp_path / "unzipped" / "dcgn"
    (zoo / "configs").mkdir(parents=True)
    (zoo / "configs" / "metadata.json").write_text("{}")
    monkeypatch.syspath_prepend(str(zoo))  # what `monai.bundle run --config_file .../configs/x.json` adds
    assert Path(locate_bundle(".", "dcgn")) == zoo
    with pytest.raises(RunError, match="not a bundle folder"):
        locate_bundle(".", "no_such_bundle")


def test_cucim_is_used_where_installed(tmp_path, sample_tiles, monkeypatch):
    """No cuCIM build exists for this machine: a stand-in module and reader check that a slide cuCIM reads goes to it
    (through MONAI's reader interface) and that an OME-TIFF does not."""
    import importlib.util
    import types

    import labelfree.transforms.wsi_reader as wr

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "cucim" else real_find_spec(n, *a))
    monkeypatch.setitem(sys.modules, "cucim", types.ModuleType("cucim"))
    monkeypatch.setattr(wr, "CuCIMWSIReader", wr.TiledTiffWSIReader)  # the same interface as MONAI's
    tif = write_demo_slide(tmp_path / "c.tif", 700, 600, [(10, 20, sample_tiles[0])], mpp=0.25, layout="generic")
    with open_slide(tif) as slide:
        assert slide.backend == "cucim" and slide.mpp == pytest.approx((0.25, 0.25))
        np.testing.assert_array_equal(slide.read(0, 10, 20, 512, 512), sample_tiles[0])
    ome = write_demo_slide(tmp_path / "c.ome.tif", 700, 600, [(10, 20, sample_tiles[0])], mpp=0.25)
    with open_slide(ome) as slide:
        assert slide.backend == "tifffile"
    with pytest.raises(SlideError, match="unknown slide backend"):
        open_slide(ome, backend="bioformats")


@pytest.mark.parametrize("start,stop,limit", [(0, 384, 1024), (384, 768, 1024), (768, 1024, 1024), (100, 300, 5000)])
def test_aligned_span_puts_given_tiles_on_the_window_grid(start, stop, limit):
    from labelfree.transforms.slide_tiles import aligned_span

    r0, r1 = aligned_span(start, stop, 128, limit, 256, 192)
    assert r0 % 192 == 0 and r0 <= max(start - 128, 0) and r1 >= min(stop + 128, limit)
    assert r1 == limit or (r1 - r0 - 256) % 192 == 0
    assert aligned_span(start, stop, 128, limit) == (max(start - 128, 0), min(stop + 128, limit))


def test_a_slide_is_read_with_one_stain_estimate_for_all_its_tiles(tmp_path, sample_tiles):
    """SSimNet's stain view re-colours each tile with the slide's stains (estimated on a few of its tiles), so a
    tile's colours do not depend on where the slide was cut; the self-training teacher has no stain view to set."""
    from labelfree.engines.slides import BundleTileSegmenter

    seg = BundleTileSegmenter(REPO / "bundles" / "ssimnet", device="cpu")
    assert seg.stain_normaliser is not None and seg.stain_normaliser.source_stains is None
    mosaic = np.concatenate(sample_tiles, axis=1)
    path = write_demo_slide(tmp_path / "s.ome.tif", mosaic.shape[1], mosaic.shape[0], [(0, 0, mosaic)], mpp=0.25)
    segment_slide(path, tmp_path, seg, SlideSettings(tile=512, margin=64, table=False), progress=False)
    source = {"stains": seg.stain_normaliser.source_stains, "max": seg.stain_normaliser.source_max_concentrations}
    np.testing.assert_allclose(np.linalg.norm(source["stains"], axis=1), 1.0, atol=1e-3)
    assert len(source["max"]) == 2 and min(source["max"]) > 0
    left, right = mosaic[:, :256], mosaic[:, 256:512]
    recolour = seg.stain_normaliser
    as_whole = recolour(torch.as_tensor(mosaic[:, :512]).permute(2, 0, 1).float() / 255.0)
    parts = [recolour(torch.as_tensor(x).permute(2, 0, 1).float() / 255.0) for x in (left, right)]
    torch.testing.assert_close(torch.cat(parts, dim=-1), as_whole)  # cut anywhere, re-coloured alike
    seg.set_stain_source(None)
    own = [recolour(torch.as_tensor(x).permute(2, 0, 1).float() / 255.0) for x in (left, right)]
    assert not torch.equal(torch.cat(own, dim=-1), as_whole)  # each part by its own statistics: not alike
    teacher = BundleTileSegmenter(REPO / "bundles" / "ssimnet", device="cpu", overrides={"stain_view": False})
    assert teacher.stain_normaliser is None
    teacher.set_stain_source(source)  # nothing to set: a no-op
