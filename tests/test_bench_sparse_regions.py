"""bench.sparse_regions: blocks, their classes and the pooled figures, on hand-made masks."""

import numpy as np
import pytest
import tifffile
from PIL import Image


def test_blocks_are_whole_squares_and_pool_by_class():
    from bench.sparse_regions import block_areas, classify, summarise_blocks

    truth = np.zeros((25, 30), np.int32)  # six whole 10 px blocks (2 rows x 3 columns); the last 5 rows are cut short
    pred = np.zeros_like(truth)
    truth[0:2, 0:2] = 1  # block (0, 0): 4 labelled pixels, sparse (4 %)
    pred[0:4, 0:4] = 7  # 16 predicted: 4x its labelled area
    truth[0:10, 10:20] = 2  # block (0, 1): dense, all labelled
    pred[0:10, 10:15] = 2  # half predicted
    pred[10:20, 20:30][:3, :3] = 3  # block (1, 2): empty of labels, 9 predicted pixels
    truth[20:25, :] = 5  # the strip the edge cuts short is left out
    areas = block_areas(truth, pred, 10)
    assert areas.tolist() == [[4, 16], [100, 50], [0, 0], [0, 0], [0, 0], [0, 9]]
    sized = np.column_stack([areas, np.full(len(areas), 100)])
    classes = classify(sized, 0.05)
    assert classes.tolist() == [1, 2, 0, 0, 0, 0]
    s = summarise_blocks(sized, classes)
    assert s["sparse"] == {"blocks": 1, "area_ratio": 4.0, "above_bound": 1.0}
    assert s["dense"] == {"blocks": 1, "area_ratio": 0.5}
    assert s["empty"] == {"blocks": 4, "predicted_share": pytest.approx(9 / 400)}
    with pytest.raises(ValueError, match="differ in shape"):
        block_areas(truth, pred[:10], 10)


def test_run_reads_magnification_and_seeds(tmp_path):
    from bench.sparse_regions import run

    labels, images, p0, p1 = (tmp_path / n for n in ("labels", "images", "p0", "p1"))
    for d in (labels, images, p0, p1):
        d.mkdir()
    truth = np.zeros((512, 512), np.uint16)
    truth[:8, :8] = 1  # one sparse block of 256 px at 40x; at 20x the blocks are 128 px
    tifffile.imwrite(labels / "a.tif", truth)
    tifffile.imwrite(labels / "b.tif", truth)
    for stem in "ab":
        Image.fromarray(np.full((512, 512, 3), 200, np.uint8)).save(images / f"{stem}.png")
    pred = truth.astype(np.int32).copy()
    tifffile.imwrite(p0 / "a_inst.tif", pred)
    tifffile.imwrite(p0 / "b_inst.tif", pred)
    pred[:16, :16] = 1  # seed 1 predicts 4x the labelled area
    tifffile.imwrite(p1 / "a_inst.tif", pred)
    tifffile.imwrite(p1 / "b_inst.tif", pred)
    (tmp_path / "per_image.csv").write_text("name,magnification\na,40x\nb,20x\n")
    r = run(
        str(labels), {"m": [str(p0), str(p1)]}, out=str(tmp_path / "out"), per_image=str(tmp_path / "per_image.csv")
    )
    assert r["block_pixels"] == {"a": 256, "b": 128}
    m = r["methods"]["m"]
    assert m["seeds"] == 2 and m["mean"]["sparse"]["blocks"] == 2 and m["mean"]["empty"]["blocks"] == 3 + 15
    assert m["mean"]["sparse"]["area_ratio"] == pytest.approx(2.5) and m["std"]["sparse"]["above_bound"] > 0
    assert (tmp_path / "out" / "sparse_regions.md").is_file()
    # the figure: the first folder's sparse blocks, most excess first (none: both predicted exactly), one row each
    assert [(b["tile"], b["block"]) for b in r["figure"]["blocks"]] == [("a", 256), ("b", 128)]
    assert np.asarray(Image.open(tmp_path / "out" / "sparse_regions_sparse_blocks.png")).shape == (2 * 256 + 4, 516, 3)
    (tmp_path / "some.csv").write_text("name,magnification\na,40x\n")
    with pytest.raises(ValueError, match="no magnification .* for b"):
        run(str(labels), {"m": [str(p0)]}, out=str(tmp_path / "out3"), per_image=str(tmp_path / "some.csv"))
    with pytest.raises(FileNotFoundError, match="b_inst.tif"):
        (p1 / "b_inst.tif").unlink()
        run(str(labels), {"m": [str(p1)]}, out=str(tmp_path / "out2"))
