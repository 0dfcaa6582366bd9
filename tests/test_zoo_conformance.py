"""Model-zoo checks on both bundles, offline: metadata schema, changelog, formatting, README sections,
``verify_net_in_out`` and ``ckpt_export`` (with the TorchScript model giving the checkpoint's output)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bundle_runner import forget_bundle_scripts

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "bundles" / "zoo" / "meta_schema_20240725.json"
BUNDLES = ("ssimnet", "dcgn")
#: the sections of the model zoo's README template
README_SECTIONS = (
    "Model Overview",
    "Data",
    "Training configuration",
    "Input",
    "Output",
    "Performance",
    "MONAI Bundle Commands",
    "References",
    "License",
)


def _bundle(name: str) -> Path:
    return REPO / "bundles" / name


@pytest.mark.parametrize("name", BUNDLES)
def test_metadata_validates_against_the_schema_offline(name):
    pytest.importorskip("jsonschema")
    from monai.bundle import verify_metadata

    meta = _bundle(name) / "configs" / "metadata.json"
    verify_metadata(meta_file=str(meta), filepath=str(SCHEMA))  # the file exists, so nothing is downloaded
    data = json.loads(meta.read_text())
    assert data["version"] in data["changelog"]
    assert "image" in data["network_data_format"]["inputs"] and "pred" in data["network_data_format"]["outputs"]


def test_schema_rejects_a_metadata_file_without_required_keys(tmp_path):
    pytest.importorskip("jsonschema")
    from monai.bundle import verify_metadata

    meta = json.loads((_bundle("ssimnet") / "configs" / "metadata.json").read_text())
    del meta["network_data_format"]["inputs"]["image"]["dtype"]
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(meta))
    with pytest.raises(Exception, match="dtype"):
        verify_metadata(meta_file=str(bad), filepath=str(SCHEMA))


@pytest.mark.parametrize("name", BUNDLES)
def test_configs_are_indented_four_spaces_and_readme_follows_the_template(name):
    for cfg in sorted((_bundle(name) / "configs").glob("*.json")):
        text = cfg.read_text()
        assert text == json.dumps(json.loads(text), indent=4) + "\n", f"{cfg} is not formatted with indent 4"
    readme = (_bundle(name) / "docs" / "README.md").read_text()
    headings = {line.lstrip("#").strip() for line in readme.splitlines() if line.startswith("## ")}
    assert set(README_SECTIONS) <= headings, set(README_SECTIONS) - headings
    assert (_bundle(name) / "LICENSE").is_file() and (_bundle(name) / "docs" / "data_license.txt").is_file()


def _monai_bundle(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args],
        cwd=_bundle(name),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("name", BUNDLES)
def test_verify_net_in_out(name):
    out = _monai_bundle(
        name,
        "verify_net_in_out",
        "--net_id",
        "network_def",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "configs/inference.json",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "verified with no error" in out.stdout + out.stderr


@pytest.mark.parametrize("name", BUNDLES)
def test_ckpt_export_gives_the_checkpoint_output(name, tmp_path):
    ckpt = _bundle(name) / "models" / "model.pt"
    if not ckpt.is_file():
        pytest.skip(f"{name} ships no checkpoint")
    ts = tmp_path / "model.ts"
    out = _monai_bundle(
        name,
        "ckpt_export",
        "--net_id",
        "network_def",
        "--filepath",
        str(ts),
        "--ckpt_file",
        "models/model.pt",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "configs/inference.json",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    scripted = torch.jit.load(str(ts), map_location="cpu").eval()

    from monai.bundle import ConfigParser

    forget_bundle_scripts()
    sys.path.insert(0, str(_bundle(name)))
    try:
        parser = ConfigParser()
        parser.read_config(str(_bundle(name) / "configs" / "inference.json"))
        parser["bundle_root"] = str(_bundle(name))
        parser["device"] = "$torch.device('cpu')"
        net = parser.get_parsed_content("network_def")
    finally:
        sys.path.remove(str(_bundle(name)))
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))  # a bare state dict, as zoo bundles
    net.eval()
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", BUNDLES)
def test_large_files_lists_the_shipped_weights_with_their_hash(name, tmp_path):
    import hashlib

    from monai.bundle import ConfigParser
    from monai.bundle.scripts import download_large_files

    bundle = REPO / "bundles" / name
    entries = ConfigParser.load_config_file(bundle / "large_files.yml")["large_files"]
    shipped = {p.relative_to(bundle).as_posix() for p in (bundle / "models").iterdir() if p.is_file()}
    assert {e["path"] for e in entries} == shipped and "models/model.pt" in shipped
    for e in entries:
        digest = hashlib.sha256((bundle / e["path"]).read_bytes()).hexdigest()
        assert e["hash_type"] == "sha256" and e["hash_val"] == digest, e["path"]
    download_large_files(bundle_path=str(bundle))  # the zoo CI's step: the file is there, so no network is used


@pytest.mark.parametrize("name", BUNDLES)
def test_evaluate_scores_the_inference_pipeline_itself(name):
    """evaluate.json only adds to inference.json (a label loader, a scorer, a report), so it can never score a pipeline
    that inference.json no longer runs."""
    from monai.bundle import ConfigParser

    configs = _bundle(name) / "configs"
    alone, laid = ConfigParser(), ConfigParser()
    alone.read_config(str(configs / "inference.json"))
    laid.read_config([str(configs / "inference.json"), str(configs / "evaluate.json")])
    for part, added in (("preprocessing", "LoadInstanceMapd"), ("postprocessing", "InstanceScoresd")):
        before, after = alone[f"{part}#transforms"], laid[f"{part}#transforms"]
        assert after[: len(before)] == before
        assert [t["_target_"].rsplit(".", 1)[-1] for t in after[len(before) :]] == [added]
    assert laid["inferer"] == alone["inferer"] and laid["network_def"] == alone["network_def"]
