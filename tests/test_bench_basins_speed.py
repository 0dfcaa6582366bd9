"""The basins benchmark: both methods run on the same relief, and its patch does not leak into the bundle."""

import numpy as np

import labelfree.transforms.dynamics as dynamics
from bench.basins_speed import tile_row


def test_tile_row_compares_both_basin_methods_and_restores_the_climb():
    yy, xx = np.mgrid[:90, :120]
    prob = np.zeros((90, 120), np.float32)
    for cy, cx in ((45, 40), (45, 58), (20, 95)):  # two touching discs and a lone one
        prob[(yy - cy) ** 2 + (xx - cx) ** 2 <= 144] = 0.9
    climb = dynamics.ascent_basins
    row = tile_row(prob, repeats=1)
    assert dynamics.ascent_basins is climb
    assert row["objects_flooded"] == row["objects_climbed"] == 3
    assert 0.9 < row["basins_same_label"] <= 1.0 and 0.9 < row["aji_between"] <= 1.0
    assert min(row[k] for k in ("basins_flooded_s", "basins_climbed_s", "instances_flooded_s")) > 0
