import numpy as np
import pytest

from labelfree.core.palette import colour_palette


def test_palette_rebuilds_the_image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 4, size=(30, 40, 3), dtype=np.uint8) * 60  # few colours, many repeats
    colours, inverse = colour_palette(img)
    assert colours.dtype == np.uint8 and inverse.dtype == np.int64 and inverse.shape == (30 * 40,)
    assert len(colours) == len(np.unique(img.reshape(-1, 3), axis=0))
    assert np.array_equal(colours[inverse].reshape(img.shape), img)
    # sorted by packed value, so the palette of a permuted image is the same
    again, _ = colour_palette(img[::-1, ::-1])
    assert np.array_equal(again, colours)


def test_palette_refuses_what_is_not_8_bit_rgb():
    with pytest.raises(TypeError, match="uint8"):
        colour_palette(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="uint8"):
        colour_palette(np.zeros((4, 4), dtype=np.uint8))


def test_palette_equals_numpy_unique_on_a_full_range_image():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(64, 70, 3), dtype=np.uint8)
    img[0, 0], img[0, 1] = (0, 0, 0), (255, 255, 255)  # both ends of the 24-bit table
    flat = img.reshape(-1, 3).astype(np.int64)
    codes, inverse = np.unique((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2], return_inverse=True)
    colours, got = colour_palette(img)
    assert np.array_equal(got, inverse.reshape(-1))
    assert np.array_equal((colours.astype(np.int64) * [1 << 16, 1 << 8, 1]).sum(1), codes)
