"""The GPU table's rendering (the timing itself needs a GPU machine and is not part of the suite)."""

from bench.gpu_speed import markdown


def test_ratios_are_against_each_networks_float32_row_at_its_own_window_batch():
    result = {
        "device": "GPU",
        "torch": "2",
        "date": "2026-12-04",
        "tiles": ["a", "b", "c"],
        "image_size": [1000, 1000],
        "rounds": 1,
        "networks": {
            "ssimnet": {
                "seconds_per_tile": {"float32, window batch 8": 0.01, "float32, window batch 32": 0.005},
                "mask_pixels_changed": {"float32": 0},
            },
            "dcgn": {
                "seconds_per_tile": {"float32, window batch 1": 0.1, "float16 autocast, window batch 1": 0.2},
                "mask_pixels_changed": {"float32": 0, "float16 autocast": 7},
            },
        },
        "bundles": {"SSimNet bundle, default": 0.3, "DCGN bundle, default": 0.8},
    }
    md = markdown(result)
    assert "| ssimnet network alone, float32, window batch 32 | 0.0050 | 0.50× |  |" in md
    assert "| SSimNet bundle, default | **0.3000** | **30.00×** | |" in md
    assert "| dcgn network alone, float16 autocast, window batch 1 | 0.2000 | 2.00× | 7 |" in md
    assert "| DCGN bundle, default | **0.8000** | **8.00×** | |" in md
    assert "over 2 tiles" in md  # the first tile is the warm-up
