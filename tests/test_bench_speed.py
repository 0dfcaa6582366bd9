"""The speed benchmark on the embedded sample: every row it prints is measured, ratios are against the network alone,
and the profile splits a bundle run into stages that account for its time."""

import json

import pytest

from bench.speed import REFERENCE_OVERLAP, markdown, run, shipped_network, time_bundle
from labelfree.sample import sample_dir


@pytest.mark.slow  # about 30 s of bundle runs; the bundles' own inference tests cover the same runs
def test_speed_rows_ratios_and_profile(tmp_path):
    images = sample_dir() / "images"
    result = run(
        str(images), out=str(tmp_path), tiles=2, rounds=1, profile=False, rows="ssimnet_network,ssimnet,otsu_ws"
    )
    sec = result["seconds_per_tile"]
    assert set(sec) == {"ssimnet_network", "ssimnet", "otsu_ws"} and all(v > 0 for v in sec.values())
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert saved["seconds_per_tile"] == sec and saved["tiles"][0].endswith(".png")
    md = (tmp_path / "speed.md").read_text()
    assert "| 1.00× |" in md  # the network alone is the reference of its own family
    assert f"{sec['ssimnet'] / sec['ssimnet_network']:.2f}×" in md
    stages = time_bundle("ssimnet", images, {}, threads=2, profile=True)["stages"]
    assert stages["network"] > 0 and stages["instances"] > 0 and stages["writing (overlay, PNG, TIFF)"] > 0
    assert "reading" in stages
    # DCGN's stages are disjoint: the stain normalisation is counted once (not again through its array transform)
    profiled = time_bundle("dcgn", images, {}, threads=2, profile=True)
    dcgn = {k: v for k, v in profiled["stages"].items() if not k.startswith("other")}
    assert dcgn["stain normalisation"] > 0 and dcgn["mixture posterior"] > 0
    assert sum(dcgn.values()) <= profiled["seconds_per_tile"] * 1.001


def _result(**fields) -> dict:
    """A speed result with the run's description filled in and ``fields`` (timings, profiles) on top."""
    run_fields = {"tiles": ["a", "b"], "image_size": [8, 8], "rounds": 1, "threads": 2, "cpu_count": 2}
    return {"seconds_per_tile": {}, "profiles": {}, **run_fields, "torch": "x", "date": "d", **fields}


def test_markdown_lists_profiles_by_stage():
    md = markdown(
        _result(
            seconds_per_tile={"dcgn_network": 0.5, "dcgn": 1.0}, profiles={"dcgn": {"network": 0.4, "instances": 0.3}}
        )
    )
    assert "| **1.000** | **2.00×** |" in md and "| instances | 0.300 |" in md and "| total | 0.700 |" in md


def test_the_reference_keeps_the_issues_windows_whatever_the_bundle_uses():
    """Ratios stay against the network alone at overlap 0.25, even where a bundle now overlaps its windows less."""
    for bundle in ("ssimnet", "dcgn"):
        _, reference = shipped_network(bundle)
        _, own = shipped_network(bundle, overlap=None)
        assert reference.overlap == REFERENCE_OVERLAP == 0.25
        assert own.overlap < reference.overlap and own.roi_size == reference.roi_size


def test_pseudo_label_stages_account_for_the_single_thread_time():
    """The profile of the pseudo labels names every stage that takes time, and the stages add up to the profiled
    single-thread total (with ``other``)."""
    from bench.speed import PSEUDO_LABEL_STAGES, pseudo_label_stages
    from labelfree.core.imageio import list_images

    files = list_images(sample_dir() / "images")[:2]
    stages = pseudo_label_stages(files)
    total = stages.pop("total on one thread, under the profiler")
    for name in ("stain separation (colour table, Vahadane, concentrations)", "fuzzy c-means (k = 3 and 2)"):
        assert stages[name] > 0
    assert stages["instances (k = 3 and 2)"] > 0 and set(stages) >= {s[0] for s in PSEUDO_LABEL_STAGES[:5]}
    assert abs(sum(stages.values()) - total) <= 0.002 * len(stages)
    md = markdown(_result(pseudo_label_stages={**stages, "total": total}))
    assert "Where the pseudo labels' seconds go" in md and "| fuzzy c-means (k = 3 and 2) |" in md
