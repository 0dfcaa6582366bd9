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


def test_the_kept_tables_carry_nothing_from_one_call_to_the_next_nor_between_threads():
    import threading

    import labelfree.core.palette as palette

    def unique(img):
        flat = img.reshape(-1, 3).astype(np.int64)
        return np.unique((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2], return_inverse=True)

    rng = np.random.default_rng(2)
    images = [
        rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8),
        rng.integers(0, 3, size=(9, 7, 3), dtype=np.uint8),
    ]
    for img in images + images[::-1]:  # a colour the previous call saw must not come back in the next one
        colours, inverse = colour_palette(img)
        codes, expected = unique(img)
        assert len(colours) == len(codes) and np.array_equal(inverse, expected.ravel())
    # a call that finds the kept tables taken (another thread's call) builds its own, with the same result
    with palette._TABLES_LOCK:
        out = {}
        worker = threading.Thread(target=lambda: out.setdefault("p", colour_palette(images[0])))
        worker.start()
        worker.join(timeout=30)
    assert np.array_equal(out["p"][1], unique(images[0])[1].ravel())
    assert not palette._TABLES[0].any()  # left clear for the next call
