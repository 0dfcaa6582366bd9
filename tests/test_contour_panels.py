"""bench.contour_panels: labelled and predicted outlines side by side, each instance outlined."""

from __future__ import annotations

import numpy as np
import pytest

from bench.contour_panels import run
from labelfree.core.imageio import load_rgb, save_png, save_tiff


def _set(tmp_path):
    rgb = np.full((64, 64, 3), 230, dtype=np.uint8)
    whole = np.zeros((64, 64), dtype=np.uint16)
    whole[20:40, 20:40] = 1  # one nucleus
    cut = whole.copy()
    cut[20:40, 30:40] = 2  # the same nucleus in two pieces
    save_png(tmp_path / "images" / "t.png", rgb)
    save_tiff(tmp_path / "labels" / "t.tif", whole)
    save_tiff(tmp_path / "a" / "t_inst.tif", whole)
    save_tiff(tmp_path / "b" / "t_inst.tif", cut)
    return tmp_path


def test_panels_draw_the_cut_between_two_pieces_that_the_whole_nucleus_lacks(tmp_path):
    d = _set(tmp_path)
    out = run(str(d / "images"), str(d / "labels"), f"a={d / 'a'},b={d / 'b'}", "t", str(d / "fig.png"), crop=None)
    fig = load_rgb(out)
    assert fig.shape[0] > 100 and fig.shape[1] > 2 * fig.shape[0]  # three panels in a row
    # below the titles, the labels' panel and the whole prediction's outline the same square; the cut one has more
    # outline: the line between the two pieces (panels are compared by their green pixels, their places shift a little)
    w, h = fig.shape[1] // 3, fig.shape[0]
    body = [fig[int(0.2 * h) : int(0.9 * h), k * w : (k + 1) * w].astype(int) for k in range(3)]
    green = [(b[..., 1] > 200) & (b[..., 0] < 100) for b in body]
    assert green[0].sum() > 0 and abs(int(green[0].sum()) - int(green[1].sum())) <= 0.1 * green[0].sum()
    assert green[2].sum() > 1.15 * green[1].sum()


def test_panels_refuse_a_missing_folder_or_tile_in_one_line(tmp_path):
    d = _set(tmp_path)
    with pytest.raises(SystemExit, match="name=folder"):
        run(str(d / "images"), str(d / "labels"), f"a={d / 'nope'}", "t", str(d / "f.png"))
    with pytest.raises(SystemExit, match="no such tile"):
        run(str(d / "images"), str(d / "labels"), f"a={d / 'a'}", "t,zz", str(d / "f.png"))
