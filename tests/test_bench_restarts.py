"""bench.dcgn_restarts: the two label-free seed criteria (the training objective and the mean object solidity)."""

import json

import numpy as np
import pytest
import torch
from skimage.draw import disk

from bench import dcgn_restarts
from labelfree.core.imageio import write_png, write_tiff


def test_solidity_prefers_whole_discs_to_lace(tmp_path):
    discs, lace = np.zeros((120, 120), np.int32), np.zeros((120, 120), np.int32)
    for i, (y, x) in enumerate([(30, 30), (30, 90), (90, 30), (90, 90)], start=1):
        discs[disk((y, x), 12)] = i
        lace[disk((y, x), 12)] = i
        lace[y - 12 : y + 12 : 3, x - 12 : x + 12] = 0  # stripes cut out: a ragged object
    for name, inst in (("discs", discs), ("lace", lace)):
        (tmp_path / name).mkdir()
        write_tiff(tmp_path / name / "t_inst.tif", inst)
    assert dcgn_restarts.solidity(str(tmp_path / "discs")) > dcgn_restarts.solidity(str(tmp_path / "lace")) + 0.1
    with pytest.raises(FileNotFoundError):
        dcgn_restarts.solidity(str(tmp_path))


def test_objective_per_checkpoint_and_reuse(tmp_path, tile, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    write_png(images / "a.png", tile.image[:128, :160].copy())
    train = dcgn_restarts.bundle_parser(dcgn_restarts.BUNDLE, config_file="train.json")
    ckpts = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = train.get_parsed_content("network_def", instantiate=True, lazy=False)
        ckpts[f"s{seed}"] = str(tmp_path / f"s{seed}.pt")
        torch.save(net.state_dict(), ckpts[f"s{seed}"])
    report = dcgn_restarts.run(str(images), json.dumps(ckpts), str(tmp_path / "out"))
    got = json.loads((tmp_path / "out" / "restarts.json").read_text())
    assert set(got["per_tile"]) == {"s0", "s1"} and set(got["per_tile"]["s0"]) == {"a"}
    assert all(np.isfinite(v) for t in got["per_tile"].values() for v in t.values())
    assert got["per_tile"]["s0"] != got["per_tile"]["s1"]  # different weights, different fits
    assert "| s0 |" in open(report).read()

    def fail(*_args, **_kwargs):
        raise AssertionError("a known checkpoint was computed again")

    # reuse: a checkpoint with the same name and path in the previous run is not computed again
    saved = dict(got["per_tile"])
    monkeypatch.setattr(dcgn_restarts, "_tiles", fail)
    dcgn_restarts.run(
        str(images), json.dumps(ckpts), str(tmp_path / "out2"), previous=str(tmp_path / "out" / "restarts.json")
    )
    assert json.loads((tmp_path / "out2" / "restarts.json").read_text())["per_tile"] == saved
