import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from labelfree.transforms.mixture_features import (
    FEATURE_KINDS,
    MixtureFeatures,
    MixtureFeaturesd,
    feature_channels,
    mixture_features,
    with_blob_excess,
)


@pytest.mark.parametrize("kind", sorted(FEATURE_KINDS))
def test_shapes_types_and_ranges(tile, kind):
    chw = torch.as_tensor(tile.image).permute(2, 0, 1)
    out = MixtureFeatures(kind)(chw)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out.shape == (feature_channels(kind), 256, 256) and torch.isfinite(out).all()
    np_out = MixtureFeatures(kind)(chw.numpy())
    assert isinstance(np_out, np.ndarray) and np.array_equal(np_out, out.numpy())
    if kind == "rgb":
        assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    else:
        assert float(out[:2].min()) >= 0.0  # amounts; stains_blob's third channel is a signed excess


def test_haematoxylin_axis_separates_nuclei_from_stroma(tile):
    """The stain concentrations put the nuclei on an axis of their own: channel 0 (haematoxylin) is higher inside
    every nucleus than in the stroma around it, and a three-component mixture on them finds the nuclei."""
    conc = mixture_features(tile.image, "stains")
    nuclei = tile.instances > 0
    assert np.median(conc[0][nuclei]) > 2 * np.median(conc[0][~nuclei])
    x = conc.reshape(2, -1).T
    gmm = GaussianMixture(3, random_state=0).fit(x)
    c = gmm.predict(x).reshape(nuclei.shape)
    hema_class = int(np.argmax([conc[0][c == j].mean() for j in range(3)]))
    found = c == hema_class
    assert 2 * (found & nuclei).sum() / (found.sum() + nuclei.sum()) > 0.8


def test_blank_tile_gets_finite_features_from_the_textbook_matrix(blank):
    out = mixture_features(blank, "stains")
    assert out.shape == (2, 128, 128) and np.isfinite(out).all() and out.max() < 0.2


def test_dict_twin_writes_the_named_key_and_keeps_the_image(tile):
    img = torch.as_tensor(tile.image).permute(2, 0, 1)
    d = MixtureFeaturesd("image", output_keys="features", kind="od")({"image": img})
    assert d["image"] is img and d["features"].shape == (3, 256, 256)
    assert "image_features" in MixtureFeaturesd("image", kind="od")({"image": img})
    with pytest.raises(ValueError, match="unknown mixture feature kind"):
        MixtureFeatures("lab")
    with pytest.raises(ValueError, match="one output key per key"):
        MixtureFeaturesd(["a", "b"], output_keys="x")


def test_blob_excess_is_high_on_a_compact_stained_blob_and_zero_on_flat_stain(tile):
    """A disc of haematoxylin stands out from its blur; a wide, even purple field (diffuse cytoplasm) does not."""
    yy, xx = np.mgrid[:128, :128]
    h = np.full((128, 128), 0.5, np.float32)
    h[(yy - 64) ** 2 + (xx - 64) ** 2 <= 8**2] = 1.5
    out = with_blob_excess(np.stack([h, np.zeros_like(h)]))
    assert out.shape == (3, 128, 128) and out.dtype == np.float32
    assert np.array_equal(out[:2], np.stack([h, np.zeros_like(h)]))
    assert out[2, 64, 64] > 0.5 and abs(out[2, 5, 5]) < 0.01
    flat = with_blob_excess(np.full((2, 64, 64), 0.8, np.float32))
    assert np.abs(flat[2]).max() < 1e-5
    # the tile's own features: the first two channels are exactly the "stains" kind
    assert np.array_equal(mixture_features(tile.image, "stains_blob")[:2], mixture_features(tile.image, "stains"))
