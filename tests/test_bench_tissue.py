"""The label-free rules of the DCGN benchmarks: the GlaS gland rule and the per-tile mixture fit."""

import numpy as np
from skimage.draw import disk as draw_disk

from bench.glas_tissue import UM_PER_PIXEL, gland_mask
from bench.mixture_em import nuclei_by_em


def test_a_ring_of_epithelium_becomes_one_filled_gland_and_specks_are_dropped():
    classes = np.ones((200, 200), np.int64)  # eosin-rich
    rr, cc = draw_disk((100, 100), 60)
    classes[rr, cc] = 2
    rr, cc = draw_disk((100, 100), 48)
    classes[rr, cc] = 0  # the lumen inside the gland
    classes[::7, 40:160][:, ::9] = 1  # gaps between nuclei in the ring: the closing bridges them
    classes[5:8, 5:8] = 2  # a lone nucleus in the stroma: too small for a gland
    mask = gland_mask(classes, 3)
    inside = np.zeros_like(mask)
    inside[draw_disk((100, 100), 58)] = True
    assert mask[inside].all() and not mask[:10, :10].any()
    assert mask.sum() * UM_PER_PIXEL**2 > 400


def test_per_tile_mixture_names_the_haematoxylin_component_nuclei(tile):
    mask = nuclei_by_em(tile.image, "stains", 3)
    nuclei = tile.instances > 0
    assert 2 * (mask & nuclei).sum() / (mask.sum() + nuclei.sum()) > 0.8


def test_grade_table_averages_each_grade_on_its_own_tiles():
    from bench.glas_tissue import grade_table

    def row(image, v):
        keys = ("dcgn_dice", "dcgn_iou", "kmeans_od_dice", "kmeans_od_iou", "dcgn_rich_fraction")
        return {"image": image, **{k: v for k in keys}}

    rows = [row("a", 0.2), row("b", 0.4), row("c", 0.9), row("d", 0.5)]
    lines = grade_table(rows, {"a": "benign", "b": "benign", "c": "malignant"})
    assert lines[2] == "| benign | 2 | 0.300 / 0.300 | 0.300 / 0.300 | 0.300 |"
    assert lines[3] == "| malignant | 1 | 0.900 / 0.900 | 0.900 / 0.900 | 0.900 |"
    assert lines[4] == "| unknown | 1 | 0.500 / 0.500 | 0.500 / 0.500 | 0.500 |"
