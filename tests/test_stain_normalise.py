import pytest
import numpy as np
import torch

from labelfree.transforms.stain_augment import RandHEDJitter
from labelfree.transforms.stain_normalise import StainNormalize, StainNormalized, fit_stain_reference, normalise_stains


def _restained(rgb: np.ndarray, h_scale: float, e_scale: float) -> np.ndarray:
    """The same tile as another lab would stain it: haematoxylin and eosin amounts scaled."""
    t = RandHEDJitter(scale=0.0, shift=0.0)
    t._do_transform, t._a, t._b = True, np.array([h_scale, e_scale, 1.0]), np.zeros(3)
    x = torch.as_tensor(rgb).permute(2, 0, 1).float() / 255.0
    return (t(x, randomize=False) * 255).round().byte().permute(1, 2, 0).numpy()


def test_two_stainings_of_one_tile_come_out_alike(tile):
    light, dark = _restained(tile.image, 0.6, 1.3), _restained(tile.image, 1.4, 0.7)
    before = np.abs(light.astype(float) - dark).mean()
    after = np.abs(normalise_stains(light).astype(float) - normalise_stains(dark)).mean()
    assert after < 0.35 * before
    # nuclei stay the darkest part of the tile
    out = normalise_stains(light).astype(float).mean(axis=-1)
    nuclei = tile.instances > 0
    assert out[nuclei].mean() < out[~nuclei].mean() - 40


def test_blank_tile_is_left_as_it_is(blank):
    assert np.array_equal(normalise_stains(blank), blank)


def test_transforms_keep_layout_dtype_and_container(tile):
    chw = torch.as_tensor(tile.image).permute(2, 0, 1)
    out = StainNormalize()(chw.float())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, 256, 256)
    assert np.array_equal(out.byte().permute(1, 2, 0).numpy(), normalise_stains(tile.image))
    as_np = StainNormalize()(chw.numpy())
    assert isinstance(as_np, np.ndarray) and as_np.dtype == np.uint8
    d = StainNormalized("image")({"image": chw, "tile": chw})
    assert d["tile"] is chw and torch.equal(d["image"], torch.as_tensor(normalise_stains(tile.image)).permute(2, 0, 1))


def test_dict_twin_keeps_the_tiles_own_concentrations_once_computed(tile, blank):
    from labelfree.transforms.mixture_features import mixture_features

    for rgb in (tile.image, blank):
        chw = torch.as_tensor(rgb).permute(2, 0, 1)
        d = StainNormalized("image", concentrations_key="features")({"image": chw})
        # the same normalised tile as without the key (a blank one unchanged), and the same values as the mixture's
        # stain features (the textbook matrix on a blank tile)
        assert torch.equal(d["image"], torch.as_tensor(normalise_stains(rgb)).permute(2, 0, 1))
        assert d["features"].dtype == torch.float32
        np.testing.assert_array_equal(np.asarray(d["features"]), mixture_features(rgb, "stains"))
    with pytest.raises(ValueError, match="one image key"):
        StainNormalized(["image", "tile"], concentrations_key="features")


def test_reference_fitted_on_tiles_is_their_typical_stain(tile, blank):
    light, dark = _restained(tile.image, 0.6, 1.3), _restained(tile.image, 1.4, 0.7)
    ref = fit_stain_reference([light, blank, tile.image, dark])  # the blank tile is skipped
    stains, top = np.asarray(ref["stains"]), np.asarray(ref["max_concentrations"])
    np.testing.assert_allclose(np.linalg.norm(stains, axis=1), 1.0, atol=1e-3)
    assert stains[0, 0] < stains[0, 1] and stains[1, 1] > stains[1, 0]  # haematoxylin blue-purple, eosin pink
    own = fit_stain_reference([tile.image])
    # the median tile of the three is the tile itself: its own reference, and normalising it to that reference
    # changes it little, while Macenko's reference re-colours it
    np.testing.assert_allclose(top, own["max_concentrations"], rtol=0.05)
    kw = dict(reference_stains=own["stains"], reference_max_concentrations=own["max_concentrations"])
    to_own = np.abs(normalise_stains(tile.image, **kw).astype(float) - tile.image).mean()
    to_macenko = np.abs(normalise_stains(tile.image).astype(float) - tile.image).mean()
    assert to_own < 0.5 * to_macenko
    with pytest.raises(ValueError, match="no tile"):
        fit_stain_reference([blank])
    with pytest.raises(ValueError, match="reference"):
        normalise_stains(tile.image, reference_stains=[[1.0, 0.0, 0.0]])


def test_unit_range_input_gives_the_same_tile_in_unit_range(tile):
    chw = torch.as_tensor(tile.image).permute(2, 0, 1)
    own = fit_stain_reference([tile.image])
    kw = dict(reference_stains=own["stains"], reference_max_concentrations=own["max_concentrations"])
    unit = StainNormalize(value_range=1.0, **kw)(chw.float() / 255.0)
    assert unit.dtype == torch.float32 and float(unit.max()) <= 1.0
    expected = torch.as_tensor(normalise_stains(tile.image, **kw)).permute(2, 0, 1).float() / 255.0
    torch.testing.assert_close(unit, expected)


def test_per_colour_normalisation_gives_the_per_pixel_bytes(tile):
    from labelfree.transforms.stain import separate_stains
    from labelfree.transforms.stain_normalise import _pixel_percentile

    own = fit_stain_reference([tile.image])
    for kw in ({}, dict(reference_stains=own["stains"], reference_max_concentrations=own["max_concentrations"])):
        per_pixel = normalise_stains(tile.image, concentrations=separate_stains(tile.image).concentrations, **kw)
        assert np.array_equal(normalise_stains(tile.image, **kw), per_pixel)
    rng = np.random.default_rng(0)
    values, counts = rng.random(50).astype(np.float32), rng.integers(1, 9, 50)
    for q in (0.0, 37.5, 99.0, 100.0):
        assert _pixel_percentile(values, counts, q) == np.percentile(np.repeat(values, counts), q)
    # only the colours near the ranks are sorted: ties, a long tail, one value, and bins finer than the values
    for values in (
        rng.choice(np.float32([0, 0.5, 0.5, 2.0]), 300),
        (rng.pareto(1.5, 20000) + rng.random(20000) * 1e-6).astype(np.float32),
        np.full(7, 0.25, np.float32),
    ):
        counts = rng.integers(1, 40, values.size)
        for q in (0.0, 1.0, 50.0, 99.0, 99.9, 100.0):
            assert _pixel_percentile(values, counts, q) == np.percentile(np.repeat(values, counts), q)


def test_dict_twin_takes_the_reference_too(tile):
    own = fit_stain_reference([tile.image])
    kw = dict(reference_stains=own["stains"], reference_max_concentrations=own["max_concentrations"])
    chw = torch.as_tensor(tile.image).permute(2, 0, 1)
    expected = torch.as_tensor(normalise_stains(tile.image, **kw)).permute(2, 0, 1)
    for key in (None, "features"):
        d = StainNormalized("image", concentrations_key=key, **kw)({"image": chw})
        assert torch.equal(d["image"], expected)
    assert not torch.equal(StainNormalized("image")({"image": chw})["image"], expected)
