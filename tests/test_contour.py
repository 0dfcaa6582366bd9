import numpy as np
import pytest
import skimage.segmentation.morphsnakes as ms

from labelfree.transforms.contour import ActiveContour, ActiveContourd, morphological_chan_vese, remove_small_objects


@pytest.mark.parametrize("num_iter, smoothing", [(1, 1), (5, 1), (4, 2), (3, 3)])
def test_same_as_skimage(num_iter, smoothing):
    rng = np.random.default_rng(num_iter)
    img = rng.normal(size=(70, 90))
    img[20:45, 30:70] += 2
    init = rng.random(img.shape) > 0.5
    # skimage keeps its SI∘IS / IS∘SI alternation in a module-level cycle; restart it so the run is comparable
    ms._curvop = ms._fcycle([lambda u: ms.sup_inf(ms.inf_sup(u)), lambda u: ms.inf_sup(ms.sup_inf(u))])
    ref = ms.morphological_chan_vese(img, num_iter, init_level_set=init, smoothing=smoothing).astype(bool)
    assert np.array_equal(morphological_chan_vese(img, init, num_iter, smoothing), ref)


@pytest.mark.parametrize("shape", [(3, 3), (5, 63), (40, 64), (33, 65), (20, 129)])
def test_same_as_skimage_at_word_edges(shape):
    """The mask is packed 64 columns to a word: widths at, below and above a word boundary give skimage's result."""
    rng = np.random.default_rng(shape[1])
    img = rng.normal(size=shape)
    init = rng.random(shape) > 0.5
    ms._curvop = ms._fcycle([lambda u: ms.sup_inf(ms.inf_sup(u)), lambda u: ms.inf_sup(ms.sup_inf(u))])
    ref = ms.morphological_chan_vese(img, 3, init_level_set=init, smoothing=2).astype(bool)
    assert np.array_equal(morphological_chan_vese(img, init, 3, 2), ref)


@pytest.mark.parametrize("lambda1, lambda2", [(2.0, 1.0), (0.5, 0.5), (1.0, 0.0)])
def test_same_as_skimage_with_region_weights(lambda1, lambda2):
    rng = np.random.default_rng(7)
    img = rng.normal(size=(50, 70))
    img[10:30, 20:50] += 1.5
    init = rng.random(img.shape) > 0.5
    ms._curvop = ms._fcycle([lambda u: ms.sup_inf(ms.inf_sup(u)), lambda u: ms.inf_sup(ms.sup_inf(u))])
    ref = ms.morphological_chan_vese(img, 4, init_level_set=init, lambda1=lambda1, lambda2=lambda2).astype(bool)
    assert np.array_equal(morphological_chan_vese(img, init, 4, 1, lambda1, lambda2), ref)


def test_smooths_and_cleans():
    img = np.zeros((60, 60))
    img[15:45, 15:45] = 1.0
    init = img > 0.5
    init[28:31, 28:31] = False  # a hole
    init[2, 2] = True  # a speck
    out = ActiveContour(num_iter=3, min_size=10)(init[None], img[None])
    assert out.shape == (1, 60, 60) and out.dtype == bool
    assert out[0, 29, 29] and not out[0, 2, 2]
    d = ActiveContourd("m", image_key="g", num_iter=3, min_size=10)({"m": init[None], "g": img[None]})
    assert np.array_equal(d["m"], out)


def test_remove_small_objects():
    m = np.zeros((20, 20), bool)
    m[1:3, 1:3] = True
    m[10:15, 10:15] = True
    out = remove_small_objects(m, 5)
    assert out.sum() == 25


def test_shape_errors():
    with pytest.raises(ValueError, match="(1, H, W)"):
        ActiveContour()(np.zeros((5, 5)), np.zeros((5, 5)))
