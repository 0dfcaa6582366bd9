"""The label-free rules of the DCGN benchmarks: the GlaS gland rule and the per-tile mixture fit."""

import numpy as np
from skimage.draw import disk as draw_disk

from bench.glas_tissue import UM_PER_PIXEL, gland_mask, ring_gland_mask
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
        keys += tuple(
            f"{m}_{s}" for m in ("dcgn_rings", "kmeans_od_rings", "whole_tile", "tissue") for s in ("dice", "iou")
        )
        keys += ("stain_composition_dice", "stain_composition_iou", "stain_composition_miou")
        return {"image": image, **{k: v for k in keys}}

    rows = [row("a", 0.2), row("b", 0.4), row("c", 0.9), row("d", 0.5)]
    lines = grade_table(rows, {"a": "benign", "b": "benign", "c": "malignant"})
    four = lambda v: " | ".join([f"{v} / {v}"] * 4)  # noqa: E731
    assert (
        lines[2] == f"| benign | 2 | 0.300 / 0.300 | 0.300 / 0.300 | 0.300 | {four('0.300')} | 0.300 / 0.300 (0.300) |"
    )
    assert (
        lines[3]
        == f"| malignant | 1 | 0.900 / 0.900 | 0.900 / 0.900 | 0.900 | {four('0.900')} | 0.900 / 0.900 (0.900) |"
    )
    assert (
        lines[4] == f"| unknown | 1 | 0.500 / 0.500 | 0.500 / 0.500 | 0.500 | {four('0.500')} | 0.500 / 0.500 (0.500) |"
    )


def _lymphocytes(classes: np.ndarray, rows: slice, cols: slice, step: int = 12) -> None:
    """Stromal nuclei: 7 px (4.3 µm) blobs every ``step`` px, touching the ones beside them through 1 px bridges."""
    for r in range(rows.start, rows.stop, step):
        for c in range(cols.start, cols.stop, step):
            classes[draw_disk((r, c), 3.5, shape=classes.shape)] = 2
            classes[r, c : c + step] = 2


def test_ring_rule_keeps_a_thin_crypt_and_a_thick_band_but_not_the_lamina_propria():
    classes = np.ones((300, 400), np.int64)  # eosin-rich stroma
    # a benign crypt: pale mucin core (r 30 px) inside a thin ring of nuclei (8 px, thinner than the opening disc)
    classes[draw_disk((80, 80), 38)] = 2
    classes[draw_disk((80, 80), 30)] = 0
    # malignant epithelium: a solid band 30 px thick
    classes[200:230, 40:360] = 2
    # lamina propria: dense small nuclei, joined in a net
    _lymphocytes(classes, slice(30, 150), slice(200, 380))
    old, new = gland_mask(classes, 3), ring_gland_mask(classes, 3)
    crypt = np.zeros(classes.shape, bool)
    crypt[draw_disk((80, 80), 36)] = True
    lamina = np.zeros(classes.shape, bool)
    lamina[40:140, 210:370] = True
    assert new[crypt].mean() > 0.95 and new[205:225, 50:350].all()
    assert new[lamina].mean() < 0.05
    assert old[lamina].mean() > 0.9  # what the class rule does: the closing joins the stromal nuclei into a "gland"


def test_ring_rule_leaves_a_pale_sprawling_stroma_out():
    classes = np.ones((240, 240), np.int64)
    classes[20:220, 20:220] = 0  # a large pale region ...
    classes[60:180, 60:180] = 1  # ... wrapped around an eosin-rich block (not compact: solidity well below 0.85)
    _lymphocytes(classes, slice(14, 230), slice(14, 20), step=6)  # nuclei along one side of it
    assert not ring_gland_mask(classes, 3)[20:220, 20:220].any()


def test_miou_averages_the_gland_and_non_gland_iou_so_a_whole_tile_mask_scores_half_its_gland_iou():
    from bench.glas_tissue import _scores

    gt = np.zeros((10, 10), bool)
    gt[:, :4] = True  # glands cover 40 % of the tile
    whole = _scores(gt, np.ones_like(gt))
    assert whole["iou"] == 0.4 and whole["miou"] == 0.2
    assert _scores(gt, gt.copy())["miou"] == 1.0
    half = np.zeros_like(gt)
    half[:, :2] = True  # half the glands found, nothing false: gland IoU 0.5, non-gland IoU 6 / 8
    assert np.isclose(_scores(gt, half)["miou"], (0.5 + 0.75) / 2)


def test_composition_rule_takes_the_epithelium_and_lumen_and_leaves_the_eosin_rich_stroma_with_its_nuclei():
    from bench.glas_tissue import composition_gland_mask

    classes = np.ones((240, 320), np.int64)  # eosin-rich stroma on the left
    _lymphocytes(classes, slice(6, 240), slice(6, 150), step=14)  # its scattered nuclei
    classes[:, 170:] = 2  # a gland on the right: epithelium ...
    classes[draw_disk((120, 245), 45)] = 0  # ... around a pale lumen
    tissue = classes != 0
    mask = composition_gland_mask(classes, 3, tissue)
    assert mask[:, 190:].mean() > 0.95  # the epithelium and its lumen (holes filled)
    assert mask[:, :140].mean() < 0.05  # the stroma, its nuclei included
    assert not composition_gland_mask(np.ones_like(classes), 3, np.ones(classes.shape, bool)).any()


def test_stain_composition_takes_the_haematoxylin_rich_gland_and_its_lumen_and_leaves_the_eosin_rich_stroma():
    from skimage.color import rgb_from_hed

    from bench.glas_tissue import stain_composition_gland_mask
    from labelfree.transforms.stain import tissue_mask

    h = np.zeros((240, 320))
    e = np.full((240, 320), 0.35)  # eosin-rich stroma on the left ...
    for r in range(10, 240, 20):  # ... with scattered small nuclei
        for c in range(10, 150, 20):
            h[draw_disk((r, c), 3, shape=h.shape)] = 0.6
    h[:, 170:], e[:, 170:] = 0.45, 0.12  # a gland on the right: haematoxylin-rich epithelium ...
    lumen = draw_disk((120, 245), 40)
    h[lumen], e[lumen] = 0.0, 0.0  # ... around a white lumen
    od = np.stack([h, e, np.zeros_like(h)], -1) @ rgb_from_hed
    rng = np.random.default_rng(0)
    rgb = np.clip(np.rint(255 * np.exp(-od) + rng.normal(0, 2, od.shape)), 0, 255).astype(np.uint8)
    mask = stain_composition_gland_mask(rgb, tissue_mask(rgb))
    assert mask[:, 190:].mean() > 0.95  # the epithelium and its lumen (holes filled)
    assert mask[:, :140].mean() < 0.05  # the stroma, its nuclei included
    assert not stain_composition_gland_mask(rgb, np.zeros(h.shape, bool)).any()  # no tissue: no gland
