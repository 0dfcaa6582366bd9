import numpy as np
import pytest
from scipy import ndimage as ndi

from labelfree.transforms.soften import SoftenLabel, SoftenLabeld, soften_mask


def peel(mask, stop=0.975):
    """Literal eq. 4: one erosion loop per component."""
    out = np.zeros(mask.shape, np.float32)
    lab, n = ndi.label(mask, structure=np.ones((3, 3)))
    for i in range(1, n + 1):
        s = lab == i
        area = s.sum()
        while s.any():
            v = 1 - s.sum() / (2 * area)
            if v > stop:
                out[s] = v
                break
            e = ndi.binary_erosion(s, np.ones((3, 3)), border_value=0)
            out[s & ~e] = v
            s = e
    return out


def test_hand_computed_square():
    m = np.zeros((9, 9), bool)
    m[2:7, 2:7] = True  # A = 25: rings of 16, 8 and the centre pixel
    out = soften_mask(m)
    assert out[2, 2] == pytest.approx(0.5)  # outer ring
    assert out[3, 3] == pytest.approx(1 - 9 / 50)  # second ring: 9 pixels were left
    assert out[4, 4] == pytest.approx(1 - 1 / 50)  # 0.98 > 0.975: peeling stops, the core takes it
    assert out[0, 0] == 0


def test_matches_erosion_loop_on_random_blobs():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:150, :150]
    m = np.zeros((150, 150), bool)
    for _ in range(25):
        cy, cx, r = rng.integers(0, 150), rng.integers(0, 150), rng.integers(2, 18)
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    assert np.allclose(soften_mask(m), peel(m))
    assert np.allclose(soften_mask(m, stop=0.9), peel(m, stop=0.9))


def test_wrappers_and_empty():
    m = np.zeros((1, 20, 20), np.uint8)
    assert not SoftenLabel()(m).any()
    m[0, 5:15, 5:15] = 1
    d = SoftenLabeld("p")({"p": m})
    assert d["p_soft"].shape == (1, 20, 20) and d["p_soft"].max() > 0.9
    with pytest.raises(ValueError):
        SoftenLabel()(m[0])


def test_touching_instances_are_softened_each_on_its_own():
    from labelfree.transforms.soften import contact_lines, soften_instances

    yy, xx = np.mgrid[:40, :60]
    inst = np.zeros((40, 60), dtype=np.int32)
    inst[(yy - 20) ** 2 + (xx - 20) ** 2 <= 10**2] = 1
    inst[((yy - 20) ** 2 + (xx - 38) ** 2 <= 10**2) & (inst == 0)] = 2  # touches disc 1 along a line
    soft = soften_instances(inst)
    merged = soften_mask(inst > 0)
    contact = (inst == 1) & (np.roll(inst, -1, axis=1) == 2)
    assert contact.any()
    assert np.all(soft[contact] == 0.5) and merged[contact].max() > 0.8  # one component: deep across the waist
    # both centres stay deep, the background stays 0, and a lone disc is softened exactly as soften_mask does
    assert soft[20, 20] > 0.9 and soft[20, 38] > 0.9 and np.all(soft[inst == 0] == 0)
    lone = (inst == 1).astype(np.int32)
    assert np.array_equal(soften_instances(lone), soften_mask(lone > 0))
    # a gap between the two: only the contact pixels change; a value outside [0, 1] is refused
    gap = soften_instances(inst, contact_value=0.0)
    assert np.all(gap[contact] == 0.0) and np.array_equal(gap[~contact_lines(inst)], soft[~contact_lines(inst)])
    with pytest.raises(ValueError, match="contact_value"):
        soften_instances(inst, contact_value=1.5)


def test_a_wider_contact_band_reaches_further_into_both_nuclei_and_nowhere_else():
    from labelfree.transforms.soften import contact_lines, soften_instances

    inst = np.zeros((20, 40), dtype=np.int32)
    inst[4:16, 6:20] = 1  # two rectangles touching along the column 19 | 20
    inst[4:16, 20:34] = 2
    one, two = contact_lines(inst), contact_lines(inst, width=2)
    assert np.array_equal(np.flatnonzero(one.any(axis=0)), [19, 20])  # the pixels next to the other nucleus
    assert np.array_equal(np.flatnonzero(two.any(axis=0)), [18, 19, 20, 21])  # and the next ones in
    assert one.sum() == 2 * 12 and two.sum() == 4 * 12 and not two[inst == 0].any()
    lone = (inst == 1).astype(np.int32)
    assert not contact_lines(lone, width=3).any()  # a nucleus alone has no contact line, however wide
    gap = soften_instances(inst, contact_value=0.0, contact_width=2)
    assert np.all(gap[two] == 0.0) and gap[10, 12] > 0.9 and gap[10, 27] > 0.9
    # the width-1 default is the lines of before
    assert np.array_equal(soften_instances(inst, contact_value=0.0), soften_instances(inst, 0.975, 0.0, 1))
    for bad in (0, 1.5, -1):
        with pytest.raises(ValueError, match="width"):
            contact_lines(inst, width=bad)
