import numpy as np
import pytest

from bench.dcgn_posterior_variants import local_excess, softmax_and
from bench.faint_objects import drop_faint_objects
from bench.variant_stats import checkpoint_list, metric_cells, summarise_variants


def disc(m, cy, cx, r, value):
    yy, xx = np.mgrid[: m.shape[0], : m.shape[1]]
    m[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value


def test_objects_fainter_than_half_the_tiles_median_contrast_are_dropped():
    rgb = np.full((90, 160, 3), 235, np.uint8)  # pale background
    inst = np.zeros(rgb.shape[:2], np.int32)
    for i, cx in enumerate((20, 60, 100)):  # three dark purple nuclei
        disc(inst, 30, cx, 9, i + 1)
    disc(inst, 70, 140, 9, 4)  # a faint smudge
    rgb[(inst > 0) & (inst < 4)] = (70, 40, 120)
    rgb[inst == 4] = (215, 205, 225)
    kept, dropped = drop_faint_objects(inst, rgb)
    assert dropped == 1 and kept.max() == 3
    assert (kept[inst == 4] == 0).all() and (kept[(inst > 0) & (inst < 4)] > 0).all()
    empty, n = drop_faint_objects(np.zeros_like(inst), rgb)
    assert n == 0 and empty.max() == 0


def test_local_excess_is_high_on_a_blob_and_near_zero_on_a_broad_area():
    h = np.zeros((120, 120), np.float32)
    h[:, 60:] = 0.6  # a broad haematoxylin-rich area
    nuclei = np.zeros(h.shape, bool)
    disc(nuclei, 30, 25, 6, True)
    h[nuclei] = 1.0  # one compact nucleus on pale ground
    feats = np.stack([h, np.zeros_like(h)])
    out = local_excess(feats, nuclei, min_size=10)
    assert out.shape == (3, 120, 120) and np.array_equal(out[:2], feats)
    assert out[2, 30, 25] > 0.5  # the nucleus stands out from its surroundings
    assert abs(out[2, 60, 100]) < 0.05  # the middle of the broad area does not


def test_softmax_and_keeps_only_pixels_both_readings_call_nuclei():
    posterior = np.zeros((80, 120), np.float32)
    softmax = np.zeros_like(posterior)
    disc(posterior, 40, 30, 12, 0.99)  # both the posterior and the softmax call it nuclei
    disc(softmax, 40, 30, 12, 0.9)
    disc(posterior, 40, 90, 12, 0.99)  # the posterior alone: the near-binary mixture claims a pale rim
    disc(softmax, 40, 90, 12, 0.3)
    disc(softmax, 40, 90, 6, 0.8)  # whose middle the network does call nuclei
    kw = dict(min_size=10, h=2.0, resplit_irregular=False, min_rel_area=0.0)
    inst = softmax_and(posterior, softmax, 0.0, **kw)
    assert inst.max() == 2
    assert (inst[40, 18:43] > 0).all()  # the first object keeps its full width
    assert inst[40, 80] == 0 and inst[40, 90] > 0  # the second shrinks to where the softmax reaches 0.5
    # with the half-seen rule the second object (mean softmax 0.8 on what is left) stays; at 0.85 it goes
    assert softmax_and(posterior, softmax, 0.5, **kw).max() == 2
    assert softmax_and(posterior, softmax, 0.85, **kw).max() == 1


def test_variants_are_summarised_over_checkpoints_and_tested_against_the_reference():
    rows = [
        {"checkpoint": c, "image": t, "rule": v, "aji": base + (0.1 if v == "other" else 0.0) + 0.01 * c}
        for c in (0, 1)
        for t, base in (("a", 0.5), ("b", 0.3), ("c", 0.4), ("d", 0.6), ("e", 0.2), ("f", 0.7))
        for v in ("default", "same", "other")
    ]
    s = summarise_variants(rows, "rule", ("default", "same", "other"), ("aji",))
    assert s["default"]["aji"]["per_checkpoint"] == pytest.approx([0.45, 0.46])
    assert s["default"]["aji"]["mean"] == pytest.approx(0.455) and s["default"]["aji"]["std"] == pytest.approx(0.005)
    assert "p" not in s["default"]["aji"] and s["same"]["aji"]["p"] == 1.0  # identical tiles: no test to run
    assert s["other"]["aji"]["mean"] == pytest.approx(0.555) and s["other"]["aji"]["p"] < 0.05
    assert metric_cells(s["other"], ("aji",))[0].startswith("0.555 ± 0.005 (p ")
    assert checkpoint_list("a.pt,,b.pt") == ["a.pt", "b.pt"] and checkpoint_list("") == [None]


def test_variants_report_has_one_row_per_variant_under_the_metric_titles():
    from bench.variant_stats import variants_markdown

    rows = [
        {"checkpoint": 0, "image": t, "variant": v, "aji": a, "recall": a}
        for t, a in (("a", 0.5), ("b", 0.3))
        for v in ("default", "other")
    ]
    summary = summarise_variants(rows, "variant", ("default", "other"), ("aji", "recall"))
    lines = variants_markdown("T", "python -m x", 1, summary, ("aji", "recall")).splitlines()
    assert lines[0] == "# T" and lines[2].startswith("`python -m x`; 1 checkpoint(s); mean ± std")
    assert lines[4:6] == ["| variant | AJI | recall |", "|---|---|---|"]
    assert lines[6] == "| default | 0.400 ± 0.000 | 0.400 ± 0.000 |"
    assert lines[7] == "| other | 0.400 ± 0.000 (p 1) | 0.400 ± 0.000 (p 1) |" and len(lines) == 8
