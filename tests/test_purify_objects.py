"""Object-level purification: hand-made tiles whose objects are nuclei or not by construction."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage as ndi

from labelfree.transforms.purify_objects import (
    PurifyInstances,
    PurifyInstancesd,
    object_scores,
    purify_instances,
    uncertain_background,
)
from tests.synthetic import E_STAIN, H_STAIN


def _tile() -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Eosin stroma with eight dark round nuclei, one faint disc, one speck and one C-shaped sliver, each an
    instance of the 'prediction'."""
    h, w = 160, 240
    yy, xx = np.mgrid[:h, :w]
    conc_h = np.zeros((h, w))
    conc_e = np.full((h, w), 0.4)
    inst = np.zeros((h, w), dtype=np.int32)
    ids: dict[str, int] = {}

    def put(name: str, region: np.ndarray, hema: float) -> None:
        ids[name] = len(ids) + 1
        inst[region] = ids[name]
        conc_h[region] = hema

    for i in range(8):
        cy, cx = 30 + 50 * (i // 4), 30 + 50 * (i % 4)
        put(f"nucleus{i}", (yy - cy) ** 2 + (xx - cx) ** 2 <= 9**2, 1.0)
    put("faint", (yy - 130) ** 2 + (xx - 30) ** 2 <= 9**2, 0.1)
    put("speck", (yy - 130) ** 2 + (xx - 80) ** 2 <= 2**2, 1.0)
    ring = ((yy - 130) ** 2 + (xx - 180) ** 2 <= 14**2) & ((yy - 130) ** 2 + (xx - 180) ** 2 >= 10**2) & (xx < 190)
    put("sliver", ring, 1.0)
    od = conc_h[..., None] * H_STAIN + conc_e[..., None] * E_STAIN
    rgb = np.clip(255 * np.exp(-od), 0, 255).astype(np.uint8)
    return rgb, inst, ids


def test_scores_follow_construction():
    rgb, inst, ids = _tile()
    s = object_scores(rgb, inst)
    by = dict(zip(s["label"].tolist(), range(len(s["label"]))))
    assert s["contrast"][by[ids["nucleus0"]]] > 5 * s["contrast"][by[ids["faint"]]] > 0
    assert s["solidity"][by[ids["nucleus0"]]] > 0.9 > 0.6 > s["solidity"][by[ids["sliver"]]]
    assert s["area"][by[ids["speck"]]] < 0.25 * s["area"][by[ids["nucleus0"]]]


def test_confident_nuclei_kept_the_rest_ignored_with_margin():
    rgb, inst, ids = _tile()
    kept, ignore = purify_instances(rgb, inst, margin=2)
    kept_ids = set(np.unique(kept).tolist()) - {0}
    assert kept_ids == {ids[f"nucleus{i}"] for i in range(8)}
    assert np.array_equal(kept[kept > 0], inst[kept > 0])  # ids unchanged
    for name in ("faint", "speck", "sliver"):
        obj = inst == ids[name]
        assert ignore[obj].all(), name
    assert not (ignore & (kept > 0)).any()
    # the margin: a pixel 2 px outside the faint disc is ignored, one 4 px outside is not
    assert ignore[130, 30 + 11] and not ignore[130, 30 + 13]


def test_empty_prediction():
    rgb, inst, _ = _tile()
    kept, ignore = purify_instances(rgb, np.zeros_like(inst))
    assert not kept.any() and not ignore.any()


def test_array_and_dictionary_twins_tensor_in_tensor_out():
    rgb, inst, ids = _tile()
    img = torch.from_numpy(rgb.transpose(2, 0, 1).copy())
    out = PurifyInstances()(img, torch.from_numpy(inst[None]))
    assert isinstance(out, torch.Tensor) and out.shape == (2, *inst.shape)
    kept, ignore = purify_instances(rgb, inst)
    assert np.array_equal(out[0].numpy(), kept) and np.array_equal(out[1].numpy().astype(bool), ignore)
    d = PurifyInstancesd("inst")({"image": img.float() / 255, "inst": inst[None]})
    assert np.array_equal(d["inst"][0], kept) and np.array_equal(d["inst_ignore"][0].astype(bool), ignore)


def test_a_nucleus_the_teacher_missed_is_left_out_not_taught_as_background():
    """A dark disc that is in no object (a nucleus the teacher missed) is uncertain background; the stroma, the
    objects and the already ignored pixels are not."""
    rgb, inst, ids = _tile()
    missed = inst == ids["nucleus7"]
    teacher = np.where(missed, 0, inst)
    kept, ignore = purify_instances(rgb, teacher)
    dark = uncertain_background(rgb, teacher, kept, ignore)
    assert dark.dtype == bool and dark.shape == inst.shape
    core = ndi.binary_erosion(missed, iterations=2)
    assert dark[core].all()
    assert not dark[teacher > 0].any() and not dark[ignore].any()
    stroma = ~ndi.binary_dilation(inst > 0, iterations=3)
    assert dark[stroma].mean() < 0.01
    nothing = np.zeros_like(teacher)
    assert not uncertain_background(rgb, teacher, nothing, ignore).any()  # no confident nucleus: no level
