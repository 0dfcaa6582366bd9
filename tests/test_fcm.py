import numpy as np
import torch

from labelfree.core.metrics import pixel_scores
from labelfree.transforms.fcm import FuzzyCMeansNuclei, FuzzyCMeansNucleid, fcm_memberships, fuzzy_cmeans
from labelfree.transforms.stain import separate_stains


def test_two_blobs():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(500, 3, generator=g), torch.randn(300, 3, generator=g) + 6])
    centers, u = fuzzy_cmeans(x, 2, seed=0)
    order = centers[:, 0].argsort()
    assert torch.allclose(centers[order], torch.tensor([[0.0] * 3, [6.0] * 3]), atol=0.3)
    assert torch.allclose(u.sum(1), torch.ones(800))
    assert torch.equal(fcm_memberships(x, centers).argmax(1), u.argmax(1))
    c2, _ = fuzzy_cmeans(x, 2, seed=0)
    assert torch.equal(centers, c2)


def test_nuclei_cluster_is_the_dark_one(tile):
    hema = separate_stains(tile.image).haematoxylin_rgb
    mask, memb, light = FuzzyCMeansNuclei(n_clusters=2)(hema)
    assert mask.shape == memb.shape == light.shape == (1, 256, 256)
    assert pixel_scores(tile.instances, mask[0])["dice"] > 0.9
    assert light[mask].mean() < light[~mask].mean()
    d = FuzzyCMeansNucleid("hema", mask_key="m", n_clusters=2)({"hema": hema})
    assert np.array_equal(d["m"], mask) and "m_membership" in d and "m_lightness" in d


def test_weighted_samples_fit_as_repeated_ones():
    """Distinct colours weighted by their counts (how the nuclei mask fits its sample) give the centres of the
    repeated samples."""
    g = torch.Generator().manual_seed(1)
    distinct = torch.cat([torch.randn(20, 3, generator=g), torch.randn(15, 3, generator=g) + 5])
    counts = torch.randint(1, 6, (35,), generator=g)
    repeated = distinct.repeat_interleave(counts, dim=0)
    c_rep, _ = fuzzy_cmeans(repeated, 2, seed=0, tol=1e-7)
    c_w, u_w = fuzzy_cmeans(distinct, 2, seed=0, tol=1e-7, weights=counts)
    order_rep, order_w = c_rep[:, 0].argsort(), c_w[:, 0].argsort()
    assert torch.allclose(c_rep[order_rep], c_w[order_w], atol=1e-4)
    assert u_w.shape == (35, 2)
    assert not torch.allclose(c_w, fuzzy_cmeans(distinct, 2, seed=0, tol=1e-7)[0], atol=1e-3)  # the counts matter
