import numpy as np
import torch

from labelfree.transforms.pale_rims import PeelPaleRimsd, peel_pale_rims


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_a_mask_wider_than_its_nucleus_is_peeled_to_the_stain_and_one_inside_is_kept():
    shape = (60, 90)
    h = np.full(shape, 0.1)
    h[_disc(shape, (30, 25), 6)] = 1.0  # a stained nucleus of radius 6 on pale stroma
    h[_disc(shape, (30, 65), 8)] = 1.0  # a second one, radius 8
    inst = np.zeros(shape, np.int32)
    inst[_disc(shape, (30, 25), 8)] = 1  # 2 px too wide: a pale rim
    inst[_disc(shape, (30, 65), 6)] = 2  # inside its nucleus: the edge is dark
    out = peel_pale_rims(inst, h, width=2)
    assert np.array_equal(out == 1, _disc(shape, (30, 25), 6))  # peeled exactly to the stained disc
    assert np.array_equal(out == 2, inst == 2)
    assert np.array_equal(peel_pale_rims(inst, h, width=0), inst)
    # one layer at a time: width 1 takes only the outer ring
    one = peel_pale_rims(inst, h, width=1)
    assert (one == 1).sum() < (inst == 1).sum() and (one == 1).sum() > (out == 1).sum()


def test_no_object_loses_more_than_half_its_pixels_and_pixels_are_never_added():
    rng = np.random.default_rng(0)
    shape = (40, 40)
    inst = np.zeros(shape, np.int32)
    inst[_disc(shape, (20, 20), 5)] = 3
    h = np.full(shape, 0.2)
    h[_disc(shape, (20, 20), 1)] = 1.0  # a tiny dark core in a big pale mask
    out = peel_pale_rims(inst, h, width=5)
    assert (out == 3).sum() >= (inst == 3).sum() / 2
    assert not ((out > 0) & (inst == 0)).any()
    noisy = peel_pale_rims(inst, rng.random(shape), width=3)
    assert not ((noisy > 0) & (inst == 0)).any() and set(np.unique(noisy)) <= {0, 3}


def test_the_dictionary_transform_reads_the_tile_and_rewrites_the_mask():
    shape = (64, 64)
    tile = np.full((3, *shape), 235, np.uint8)  # pale pink background
    nucleus = _disc(shape, (32, 32), 7)
    tile[:, nucleus] = np.array([70, 50, 140], np.uint8)[:, None]  # haematoxylin blue-purple
    tile[:, ~nucleus] = np.array([230, 170, 200], np.uint8)[:, None]  # eosin-pink stroma
    inst = np.zeros((1, *shape), np.int32)
    inst[0][_disc(shape, (32, 32), 9)] = 1
    d = {"inst": torch.as_tensor(inst), "seg": torch.as_tensor(((inst > 0) * 255).astype(np.uint8)), "tile": tile}
    out = PeelPaleRimsd("inst", width=4)(d)  # enough layers to reach the stain along the diagonals too
    assert isinstance(out["inst"], torch.Tensor) and out["inst"].shape == (1, *shape)
    assert np.array_equal(out["inst"][0].numpy() > 0, nucleus)
    assert np.array_equal(out["seg"][0].numpy() > 0, nucleus)
    assert PeelPaleRimsd("inst", width=0)(d) == d
