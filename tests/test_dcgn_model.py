"""DCGN network and loss (bundles/dcgn/scripts): shapes, gradients, weight loading, mixture fitting, empty classes."""

import pytest
import torch

from bundle_runner import import_bundle_module

_loss = import_bundle_module("dcgn", "loss")
DCGNLoss = _loss.DCGNLoss
gmm_parameters = _loss.gmm_parameters
_network = import_bundle_module("dcgn", "network")
MobileNetV2UNet = _network.MobileNetV2UNet


@pytest.fixture(scope="module")
def two_colour_image():
    g = torch.Generator().manual_seed(0)
    img = torch.zeros(1, 3, 32, 32)
    img[..., :16] = torch.tensor([0.2, 0.3, 0.7])[:, None, None]
    img[..., 16:] = torch.tensor([0.8, 0.6, 0.3])[:, None, None]
    return img + 0.05 * torch.randn(img.shape, generator=g)


def test_network_matches_the_official_size_and_every_parameter_learns():
    net = MobileNetV2UNet(out_channels=3, final_bn_relu=True)
    assert sum(p.numel() for p in net.parameters()) == 4_912_745  # official Keras model: 4.91 M with K = 3
    y = net(torch.rand(2, 3, 64, 64))
    assert y.shape == (2, 3, 64, 64)
    DCGNLoss()(y, torch.rand(2, 3, 64, 64)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 3, 48, 48))


def test_fused_upsample_conv_equals_nearest_upsample_then_conv():
    torch.manual_seed(0)
    m = _network.NearestUpConv2d(5, 3)
    x = torch.randn(2, 5, 7, 9, requires_grad=True)
    ref = torch.nn.functional.conv2d(torch.nn.functional.interpolate(x, scale_factor=2), m.weight, m.bias, padding=1)
    y = m(x)
    assert y.shape == (2, 3, 14, 18)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    gx, gw = torch.autograd.grad((y * ref.detach()).sum(), [x, m.weight])
    rx, rw = torch.autograd.grad((ref * ref.detach()).sum(), [x, m.weight])
    torch.testing.assert_close(gx, rx, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gw, rw, atol=1e-3, rtol=1e-4)


def test_encoder_weights_load_from_a_local_torchvision_layout_file(tmp_path):
    src = MobileNetV2UNet()
    sd = {f"features.{k}": v.clone() + 1.0 for k, v in src.features.state_dict().items() if v.is_floating_point()}
    sd.update({"classifier.1.weight": torch.zeros(1000, 1280), "features.18.0.weight": torch.zeros(1280, 320, 1, 1)})
    # a full torchvision file also holds block 17's depthwise/projection weights, which the DCGN graph does not use
    sd["features.17.conv.1.0.weight"] = torch.zeros(960, 1, 3, 3)
    for k, v in src.features.state_dict().items():
        sd.setdefault(f"features.{k}", v)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save({"state_dict": sd}, path)
    net = MobileNetV2UNet(pretrained_path=str(path))
    assert torch.equal(net.features[0][0].weight, sd["features.0.0.weight"])
    torch.save({"features.0.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not match"):
        MobileNetV2UNet().load_encoder_weights(tmp_path / "bad.pth")
    with pytest.raises(FileNotFoundError):
        MobileNetV2UNet(pretrained_path=str(tmp_path / "missing.pth"))


def test_closed_form_parameters():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]])
    gamma = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    alpha, mu, sigma = gmm_parameters(x, gamma)
    assert torch.allclose(alpha, torch.tensor([2 / 3, 1 / 3]))
    assert torch.allclose(mu, torch.tensor([[1.0, 0.0], [10.0, 10.0]]))
    assert torch.allclose(sigma[0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


@pytest.mark.parametrize("objective", ["marginal", "elbo"])
def test_two_gaussian_image_is_separated(two_colour_image, objective):
    """Without the centralised constraint the mixture likelihood alone separates two colours exactly."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 2, 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    loss = DCGNLoss(lam=0.0, objective=objective)
    for _ in range(150):
        opt.zero_grad()
        loss(net(two_colour_image), two_colour_image).backward()
        opt.step()
    pred = net(two_colour_image).argmax(1)[0]
    left = pred[:, :16]
    right = pred[:, 16:]
    assert (left == left[0, 0]).all() and (right == right[0, 0]).all() and left[0, 0] != right[0, 0]


def test_empty_component_is_finite(two_colour_image):
    logits = torch.zeros(1, 3, 32, 32)
    logits[:, 0] = 40.0  # components 1 and 2 get (numerically) no mass
    logits.requires_grad_(True)
    for kw in ({}, {"objective": "elbo"}, {"normaliser": "variance"}):
        out = DCGNLoss(**kw)(logits, two_colour_image)
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(logits.grad).all()
        logits.grad = None


def test_constraint_penalises_distance_from_the_batch_mean(two_colour_image):
    split = torch.zeros(1, 2, 32, 32)
    split[:, 0, :, :16] = 20.0
    split[:, 1, :, 16:] = 20.0
    no_pen = DCGNLoss(lam=0.0)(split, two_colour_image)
    with_pen = DCGNLoss(lam=0.1)(split, two_colour_image)
    assert with_pen > no_pen
    with pytest.raises(ValueError):
        DCGNLoss(normaliser="mad")


def test_glass_is_left_out_of_the_mixture_when_a_tissue_threshold_is_set(two_colour_image):
    img = two_colour_image.clamp(0, 0.9).clone()
    img[..., :8, :] = 1.0  # eight rows of empty glass on top
    logits = torch.randn(1, 2, 32, 32, generator=torch.Generator().manual_seed(1))
    masked = DCGNLoss(tissue_threshold=0.95)(logits, img)
    tissue_only = DCGNLoss()(logits[..., 8:, :], img[..., 8:, :])
    torch.testing.assert_close(masked, tissue_only)
    assert not torch.isclose(DCGNLoss()(logits, img), tissue_only)
    blank = torch.ones(1, 3, 32, 32)  # nothing below the threshold: every pixel is used, the loss stays finite
    assert torch.isfinite(DCGNLoss(tissue_threshold=0.95)(logits, blank + 0.01 * torch.rand(1, 3, 32, 32)))


_classes = import_bundle_module("dcgn", "classes")
_engine = import_bundle_module("dcgn", "engine")


def test_classes_are_named_by_haematoxylin_without_labels(tile):
    import numpy as np

    nuclei = tile.instances > 0
    # whatever raw index the mixture gave the nuclei, they come out as class 1 (K = 2) / class 2 (K = 3)
    for raw_nuclei in (0, 1):
        raw = np.where(nuclei, raw_nuclei, 1 - raw_nuclei)
        order = _classes.haematoxylin_order(raw, tile.image, 2)
        assert np.array_equal(_classes.reorder_classes(raw, order), nuclei.astype(int))
    grey = tile.image.mean(axis=-1)
    raw3 = np.where(nuclei, 0, np.where(grey > np.median(grey[~nuclei]), 2, 1))
    named = _classes.reorder_classes(raw3, _classes.haematoxylin_order(raw3, tile.image, 3))
    assert (named[nuclei] == 2).all()
    empty = _classes.haematoxylin_order(np.zeros((256, 256), int), tile.image, 3)
    assert empty[-1] == 0  # the only populated class is ranked last, the empty ones first


def test_glass_becomes_background_class_when_asked(tile):
    import numpy as np

    rgb = tile.image.copy()
    rgb[:32] = 250  # a band of empty glass
    prob = np.zeros((2, *rgb.shape[:2]), np.float32)
    prob[1] = 1.0  # the network calls everything class 1
    prob[0, 100:140, 100:140], prob[1, 100:140, 100:140] = 1.0, 0.0
    data = {"pred": torch.as_tensor(prob), "image": torch.as_tensor(rgb).permute(2, 0, 1)}
    plain = _classes.NameClassesd()(data)["seg"][0]
    glass = _classes.NameClassesd(glass_is_background=True)(data)["seg"][0]
    assert (plain[:32] > 0).all() and (glass[:32] == 0).all()
    from labelfree.transforms.stain import tissue_mask

    assert np.array_equal(glass, np.where(tissue_mask(rgb), plain, 0))


def test_posterior_instances_split_where_the_posterior_dips():
    import numpy as np

    # one elongated blob (semi-axes 16 and 10 px): the distance alone has no saddle in it, but the network's nuclei
    # posterior dips to 0.55 across its middle, where two nuclei would touch
    yy, xx = np.mgrid[:64, :80]
    blob = ((yy - 32) / 10.0) ** 2 + ((xx - 40) / 16.0) ** 2 <= 1
    rgb = np.full((64, 80, 3), (225, 185, 205), np.uint8)
    rgb[blob] = (80, 50, 120)  # dark purple nuclei on pink: the haematoxylin rule names class 1 nuclei
    p = np.where(blob, 0.95, 0.05).astype(np.float32)
    p[blob & (np.abs(xx - 40) <= 1)] = 0.55
    p[5:15, 5:15] = 0.45  # the nuclei class is not the argmax there: neither rule takes it
    data = {"pred": torch.as_tensor(np.stack([1 - p, p])), "image": torch.as_tensor(rgb).permute(2, 0, 1)}
    by_class = _classes.NameClassesd(min_size=10)(data)["inst"][0]
    by_posterior = _classes.NameClassesd(instances_from="posterior", min_size=10)(data)["inst"][0]
    assert by_class.max() == 1 and by_posterior.max() == 2
    assert by_posterior[32, 30] != by_posterior[32, 50]
    assert np.array_equal(by_class > 0, blob) and np.array_equal(by_posterior > 0, blob)
    with pytest.raises(ValueError, match="instances_from"):
        _classes.NameClassesd(instances_from="argmax")


def test_mixture_posterior_gives_back_what_the_softmax_over_called(tile):
    """A softmax whose nuclei class also takes a 3-pixel ring of stroma around every nucleus defines, on the tile's
    own stain concentrations, a mixture whose posterior returns the ring to the stroma."""
    import numpy as np
    from scipy import ndimage as ndi

    from labelfree.core.metrics import pixel_scores
    from labelfree.transforms.mixture_features import mixture_features

    nuclei = tile.instances > 0
    wide = ndi.binary_dilation(nuclei, iterations=3)
    grey = tile.image.mean(axis=-1)
    prob = np.full((3, *nuclei.shape), 0.05, np.float32)
    prob[2][wide] = 0.9
    paler = grey > np.median(grey[~wide])
    prob[0][~wide & paler], prob[1][~wide & ~paler] = 0.9, 0.9
    data = {
        "pred": torch.as_tensor(prob),
        "image": torch.as_tensor(tile.image).permute(2, 0, 1),
        "features": torch.as_tensor(mixture_features(tile.image, "stains")),
    }
    network = _classes.NameClassesd(instances_from="posterior", min_size=10)(data)
    mixture = _classes.NameClassesd(instances_from="posterior", min_size=10, class_posterior="mixture")(data)
    assert pixel_scores(tile.instances, network["inst"][0])["dice"] < 0.75
    assert pixel_scores(tile.instances, mixture["inst"][0])["dice"] > 0.9
    assert (mixture["seg"][0][nuclei] == 2).mean() > 0.95 and (mixture["seg"][0][wide & ~nuclei] == 2).mean() < 0.2
    assert mixture["class_metadata"]["dcgn_class_posterior"] == "mixture"
    with pytest.raises(KeyError, match="features"):
        _classes.NameClassesd(class_posterior="mixture")({k: v for k, v in data.items() if k != "features"})
    with pytest.raises(ValueError, match="class_posterior"):
        _classes.NameClassesd(class_posterior="em")
    with pytest.raises(ValueError, match="do not match"):
        _classes.tile_mixture_posterior(prob, data["features"][:, :128])


def test_prepare_batch_uses_the_image_or_its_features_as_target():
    x, f = torch.rand(2, 3, 8, 8), torch.rand(2, 2, 8, 8)
    a, b = _engine.PrepareBatchImageAsTarget()({"image": x, "label": torch.zeros(1)})
    assert a is b and torch.equal(a, x)
    a, b = _engine.PrepareBatchImageAsTarget(target_key="features")({"image": x, "features": f, "label": x})
    assert torch.equal(a, x) and torch.equal(b, f)


_tissue = import_bundle_module("dcgn", "tissue")


def test_tissue_legend_names_every_class_by_stain():
    names = [e["name"] for e in _tissue.tissue_legend(3)]
    assert (
        names[0].startswith("least stained")
        and names[1].startswith("eosin-rich")
        and names[2].startswith("haematoxylin")
    )
    four = _tissue.tissue_legend(4)
    assert [e["class"] for e in four] == [0, 1, 2, 3] and "(2 of 2)" in four[2]["name"]
    assert len({tuple(e["colour"]) for e in four}) == 4  # every class its own colour
    assert _tissue.tissue_legend(2)[1]["name"] == "stained tissue"
    with pytest.raises(ValueError, match="at least 2"):
        _tissue.tissue_legend(1)


def test_tissue_map_colours_the_named_classes_and_blends_the_overlay(tile):
    import numpy as np

    seg = np.zeros((1, 256, 256), np.uint8)
    seg[0, :, 100:200], seg[0, :, 200:] = 1, 2
    rgb = torch.as_tensor(tile.image).permute(2, 0, 1)
    d = _tissue.TissueMapd(image_key="tile", n_classes=3)({"seg": seg, "tile": rgb, "class_metadata": {"a": "b"}})
    legend = _tissue.tissue_legend(3)
    for j, cols in enumerate((slice(0, 100), slice(100, 200), slice(200, None))):
        assert (d["tissue"][:, cols] == legend[j]["colour"]).all()
    assert d["tissue_overlay"].shape == (256, 256, 3) and d["tissue_overlay"].dtype == np.uint8
    assert not np.array_equal(d["tissue_overlay"], tile.image)
    assert d["class_metadata"]["a"] == "b" and "least stained" in d["class_metadata"]["dcgn_tissue_legend"]
    # K = 2 maps are stored as 0/255
    two = _tissue.TissueMapd(image_key="tile", n_classes=2)({"seg": seg * 255 // 2, "tile": rgb})
    assert (two["tissue"][:, 0] == legend[0]["colour"]).all()


_pretrain = import_bundle_module("dcgn", "pretrain")


def test_masked_stain_batch_hides_blocks_and_standardises_the_target():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 64, 96)
    stains = torch.rand(2, 2, 64, 96) * torch.tensor([3.0, 0.5])[:, None, None] + 1.0
    masked, target = _pretrain.MaskedStainBatch(block=16, ratio=0.5)({"image": image, "features": stains})
    hidden = target[:, 2].bool()
    assert masked.shape == image.shape and target.shape == (2, 3, 64, 96)
    # whole 16 × 16 cells, about half of them, filled with mid-grey; the visible pixels untouched
    cells = hidden[:, ::16, ::16]
    assert torch.equal(hidden, cells.repeat_interleave(16, 1).repeat_interleave(16, 2))
    assert 0.2 < cells.float().mean() < 0.8
    assert torch.all(masked.permute(1, 0, 2, 3)[:, hidden] == 0.5)
    assert torch.equal(masked.permute(1, 0, 2, 3)[:, ~hidden], image.permute(1, 0, 2, 3)[:, ~hidden])
    # the target is the stains of every pixel, hidden or not, standardised per sample and channel
    torch.testing.assert_close(target[:, :2].mean(dim=(2, 3)), torch.zeros(2, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(target[:, :2].std(dim=(2, 3)), torch.ones(2, 2), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="ratio"):
        _pretrain.MaskedStainBatch(ratio=1.0)


def test_masked_stain_loss_weights_hidden_pixels():
    loss = _pretrain.MaskedStainLoss(hidden_weight=3.0)
    target = torch.zeros(1, 3, 2, 2)
    target[0, 2, 0, 0] = 1.0  # one hidden pixel of four
    pred = torch.zeros(1, 2, 2, 2)
    pred[0, :, 0, 0] = 1.0  # wrong only there
    # weights 3 + 1 + 1 + 1 over 2 channels: the error of the hidden pixel counts three times
    assert loss(pred, target).item() == pytest.approx(3 * 2 / (6 * 2))
    pred2 = torch.zeros(1, 2, 2, 2)
    pred2[0, :, 1, 1] = 1.0  # the same error on a visible pixel
    assert loss(pred2, target).item() == pytest.approx(2 / (6 * 2))
    with pytest.raises(ValueError, match="does not match"):
        loss(torch.zeros(1, 3, 2, 2), target)


def test_pretrained_encoder_file_loads_into_a_new_network(tmp_path):
    pretrained = MobileNetV2UNet(out_channels=2)
    for p in pretrained.parameters():
        p.data.add_(0.5)
    path = tmp_path / "encoder.pt"
    torch.save(_pretrain.encoder_of(pretrained).state_dict(), path)
    assert all(k.startswith("features.") for k in torch.load(path, weights_only=True))
    net = MobileNetV2UNet(out_channels=3, pretrained_path=str(path))
    assert all(
        torch.equal(a, b) for a, b in zip(net.features.state_dict().values(), pretrained.features.state_dict().values())
    )
    assert not torch.equal(net.up1[0].weight, pretrained.up1[0].weight)  # only the encoder is taken


def test_objects_the_network_half_sees_are_dropped(tile):
    """Nuclei the mixture posterior takes but the network's own softmax barely calls nuclei (mean below 0.5) are
    dropped with ``min_mean_softmax``; the others stay, each whole."""
    import numpy as np
    from scipy import ndimage as ndi

    from labelfree.transforms.mixture_features import mixture_features

    nuclei = tile.instances > 0
    alone = [
        i
        for i in np.unique(tile.instances[nuclei])
        if not (ndi.binary_dilation(tile.instances == i, iterations=2) & nuclei & (tile.instances != i)).any()
    ]
    faint = np.isin(tile.instances, alone[:3])  # three lone nuclei the softmax gives 0.4 (still its argmax)
    grey = tile.image.mean(axis=-1)
    paler = grey > np.median(grey[~nuclei])
    prob = np.full((3, *nuclei.shape), 0.05, np.float32)
    prob[2][nuclei] = 0.9
    prob[:, faint] = np.array([0.3, 0.3, 0.4], np.float32)[:, None]
    prob[0][~nuclei & paler], prob[1][~nuclei & ~paler] = 0.9, 0.9
    data = {
        "pred": torch.as_tensor(prob),
        "image": torch.as_tensor(tile.image).permute(2, 0, 1),
        "features": torch.as_tensor(mixture_features(tile.image, "stains")),
    }
    kw = dict(instances_from="posterior", min_size=10, class_posterior="mixture", min_rel_area=0.25)
    kept = _classes.NameClassesd(**kw)(data)["inst"][0]
    dropped = _classes.NameClassesd(min_mean_softmax=0.5, **kw)(data)["inst"][0]
    assert (kept[faint] > 0).mean() > 0.9  # the mixture step calls them nuclei
    assert not (dropped[faint] > 0).any()
    half_seen = np.unique(kept[faint & (kept > 0)])
    assert np.array_equal(dropped > 0, (kept > 0) & ~np.isin(kept, half_seen))  # every other object as it was
    assert dropped.max() == len(np.unique(dropped)) - 1  # renumbered 1..m
