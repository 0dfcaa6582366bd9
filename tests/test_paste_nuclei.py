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


def _reference_paste(rgb, inst, ignore, fraction, max_overlap, rng):
    """The straightforward form of paste_touching_nuclei (one pose and one full window comparison per draw and step),
    which the library's faster form must match draw for draw."""
    out_rgb, out_inst = rgb.copy(), inst.astype(np.int32, copy=True)
    areas = np.bincount(out_inst.ravel())
    ids = np.flatnonzero(areas)
    ids = ids[ids > 0]
    if ids.size < 2:
        return out_rgb, out_inst
    median = float(np.median(areas[ids]))
    donors = ids[(areas[ids] >= 0.5 * median) & (areas[ids] <= 2.0 * median)]
    boxes = ndi.find_objects(out_inst)
    centre_of = {int(i): c for i, c in zip(ids, np.asarray(ndi.center_of_mass(np.ones_like(out_inst), out_inst, ids)))}
    blocked = (out_inst > 0) | (np.zeros_like(out_inst, bool) if ignore is None else ignore)
    height, width = out_inst.shape
    target, next_id, placed = int(round(fraction * ids.size)), int(out_inst.max()) + 1, 0
    for _ in range(20 * target):
        if placed >= target:
            break
        donor, host = int(rng.choice(donors)), int(rng.choice(ids))
        if donor == host:
            continue
        mask, pixels = out_inst[boxes[donor - 1]] == donor, rgb[boxes[donor - 1]]
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        mask, pixels = np.rot90(mask, turns), np.rot90(pixels, turns)
        if flip:
            mask, pixels = mask[:, ::-1], pixels[:, ::-1]
        offset = np.argwhere(mask).mean(axis=0)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        step = np.array([np.sin(angle), np.cos(angle)])
        overlap = rng.uniform(0.0, max_overlap) * np.sqrt(mask.sum() / np.pi)
        start, h, w, spot = centre_of[host] - offset, *mask.shape, None
        for t in range(0, 4 * max(h, w) + 4):
            y, x = np.round(start + t * step).astype(int)
            if y < 0 or x < 0 or y + h > height or x + w > width:
                break
            if not (mask & (out_inst[y : y + h, x : x + w] == host)).any():
                spot = np.round(start + max(t - 1 - overlap, 0.0) * step).astype(int)
                break
        if spot is None:
            continue
        y, x = int(spot[0]), int(spot[1])
        if y < 1 or x < 1 or y + h > height - 1 or x + w > width - 1:
            continue
        region = (slice(y, y + h), slice(x, x + w))
        halo = ndi.binary_dilation(mask, iterations=1, border_value=0)
        under = out_inst[region]
        if (blocked[region] & halo & (under != host)).any():
            continue
        alpha = np.clip(ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1] / 2.0, 0.0, 1.0)[..., None]
        dest = out_rgb[region]
        dest[mask] = np.round((alpha * pixels + (1.0 - alpha) * dest)[mask]).astype(np.uint8)
        under[mask] = next_id
        blocked[region] |= halo
        next_id += 1
        placed += 1
    return out_rgb, out_inst


@pytest.mark.parametrize("seed", range(4))
def test_same_pastes_as_the_straightforward_form_on_a_crowded_tile(seed):
    # crowded, touching, irregular nuclei (most draws find no free spot) and a band of ignored pixels: every shortcut
    # of the library's form (poses kept per donor, the host's box, the probe pixel) is exercised
    rng = np.random.default_rng(seed)
    inst = ndi.label(ndi.gaussian_filter(rng.random((160, 180)), 2.5) > 0.52)[0].astype(np.int32)
    inst[ndi.binary_dilation(inst == 1, iterations=3) & (inst == 0)] = 1  # one region grown irregular
    rgb = rng.integers(0, 256, (160, 180, 3), dtype=np.uint8)
    ignore = np.zeros(inst.shape, bool)
    ignore[:, 150:153] = True
    for fraction in (0.15, 0.6):
        got = paste_touching_nuclei(rgb, inst, ignore, fraction, 0.25, np.random.default_rng(seed))
        want = _reference_paste(rgb, inst, ignore, fraction, 0.25, np.random.default_rng(seed))
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        assert int(got[1].max()) > int(inst.max())  # something was pasted
