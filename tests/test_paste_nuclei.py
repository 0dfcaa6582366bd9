"""Synthetic touching nuclei (labelfree.transforms.paste_nuclei) on hand-made tiles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from labelfree.transforms.paste_nuclei import PasteTouchingNuclei, PasteTouchingNucleid, paste_touching_nuclei


def _discs(n_side: int = 4, size: int = 200, radius: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Dark discs on a pale pink tile, far apart: each pasted copy can only touch the disc it was moved against."""
    yy, xx = np.mgrid[:size, :size]
    inst = np.zeros((size, size), dtype=np.int32)
    rgb = np.empty((size, size, 3), dtype=np.uint8)
    rgb[:] = (235, 200, 220)
    step = size // n_side
    label = 0
    for i in range(n_side):
        for j in range(n_side):
            label += 1
            cy, cx = step // 2 + i * step, step // 2 + j * step
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
            inst[disc] = label
            rgb[disc] = (60 + 8 * label, 40, 120)
    return rgb, inst


def _touching(a: np.ndarray, b: np.ndarray) -> bool:
    return bool((ndi.binary_dilation(a) & b).any())


def test_pasted_nuclei_touch_exactly_one_host_and_keep_their_own_ids():
    rgb, inst = _discs()
    out_rgb, out = paste_touching_nuclei(rgb, inst, fraction=0.5, rng=np.random.default_rng(3))
    n = int(inst.max())
    new_ids = np.unique(out[out > n])
    assert new_ids.size == 8  # half of the 16 discs
    assert out.dtype == np.int32 and out_rgb.dtype == np.uint8 and out_rgb.shape == rgb.shape
    for new in new_ids:
        obj = out == new
        hosts = [i for i in range(1, n + 1) if _touching(obj, out == i)]
        assert len(hosts) == 1, (new, hosts)
        others = [int(m) for m in new_ids if m != new and _touching(obj, out == m)]
        assert not others
        # a copy of a disc: dark pixels, about a disc's area (the part over its host included)
        assert out_rgb[obj][:, 1].max() <= 140 and 0.7 * np.pi * 49 <= obj.sum() <= 1.1 * np.pi * 7.5**2
    # every original disc keeps most of itself: a paste overlaps its host by at most a quarter of a radius
    for i in range(1, n + 1):
        assert (out == i).sum() >= 0.75 * (inst == i).sum()
    # the inputs are not modified
    assert inst.max() == n and (rgb[inst == 0] == (235, 200, 220)).all()


def test_nothing_is_pasted_on_ignored_pixels():
    rgb, inst = _discs()
    ignore = np.zeros(inst.shape, dtype=bool)
    ignore[:, 100:] = True  # the right half is left out of the loss
    out_rgb, out = paste_touching_nuclei(rgb, inst, ignore, fraction=1.0, rng=np.random.default_rng(0))
    assert (out > inst.max()).any()
    assert (out[ignore] == inst[ignore]).all() and (out_rgb[ignore] == rgb[ignore]).all()


def test_same_seed_same_bytes_and_another_seed_differs():
    rgb, inst = _discs()
    a = paste_touching_nuclei(rgb, inst, rng=np.random.default_rng(5))
    b = paste_touching_nuclei(rgb, inst, rng=np.random.default_rng(5))
    c = paste_touching_nuclei(rgb, inst, rng=np.random.default_rng(6))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("n", [0, 1])
def test_a_tile_with_fewer_than_two_nuclei_comes_back_unchanged(n):
    rgb, inst = _discs()
    inst = np.where(inst <= n, inst, 0)
    out_rgb, out = paste_touching_nuclei(rgb, inst, fraction=1.0)
    assert np.array_equal(out, inst) and np.array_equal(out_rgb, rgb)


def test_array_and_dictionary_twins_agree_channel_first():
    rgb, inst = _discs()
    image = np.ascontiguousarray(rgb.transpose(2, 0, 1))
    array = PasteTouchingNuclei(fraction=0.3)
    array.set_random_state(7)
    img_a, inst_a = array(image, inst)
    twin = PasteTouchingNucleid(fraction=0.3)
    twin.set_random_state(7)
    d = twin({"image": image, "inst": inst, "ignore": np.zeros(inst.shape, dtype=bool)})
    assert img_a.shape == (3, *inst.shape) and inst_a.shape == inst.shape
    assert np.array_equal(d["image"], img_a) and np.array_equal(d["inst"], inst_a)
    assert (inst_a > inst.max()).any()
