import pytest
import numpy as np
import torch

from labelfree.transforms.stain_augment import RandHEDJitter
from labelfree.transforms.stain_normalise import StainNormalize, StainNormalized, normalise_stains


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
