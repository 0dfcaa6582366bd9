"""The one-command SSimNet recipe (configs/recipe.json, scripts/recipe.py): stage order, the stopping rule, resuming."""

import json
from pathlib import Path

import pytest
import torch

from bundle_runner import REPO, import_bundle_module, run_bundle_ok, write_synthetic_dataset

BUNDLE = "ssimnet"
ROOT = REPO / "bundles" / BUNDLE


class FakeStages:
    """Stands in for ``monai.bundle run``: writes the stage's checkpoint and, for a round, the given agreement."""

    def __init__(self, agreements, fail_at=None):
        self.agreements = list(agreements)
        self.fail_at = fail_at
        self.calls = []

    def __call__(self, cmd, log):
        folder = Path(cmd[cmd.index("--output_dir") + 1])
        name = folder.name
        self.calls.append((name, cmd))
        log.write_text("fake run\n")
        if name == self.fail_at:
            raise RuntimeError(f"recipe stage failed (exit 1); its log: {log}")
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"w": torch.tensor([len(self.calls)])}, folder / "model.pt")
        if name.startswith("round"):
            value = self.agreements[int(name[5:]) - 1]
            (folder / "round_agreement.json").write_text(json.dumps({"round_agreement": value}))


@pytest.fixture(scope="module")
def recipe():
    return import_bundle_module(BUNDLE, "recipe")


def test_rounds_follow_the_last_checkpoint_and_stop_at_the_agreement(recipe, tmp_path):
    fake = FakeStages([0.95, 0.972, 0.99])
    record = recipe.run_recipe(
        ROOT, tmp_path / "imgs", tmp_path / "out", seed=3, run_stage=fake, model_path=tmp_path / "m.pt"
    )
    assert [c[0] for c in fake.calls] == ["base", "round1", "round2"]  # 0.972 >= 0.97: no third round
    base_cmd, r1_cmd, r2_cmd = (c[1] for c in fake.calls)
    assert "configs/self_train.json" not in base_cmd[5] and "configs/self_train.json" in r1_cmd[5]
    assert r1_cmd[r1_cmd.index("--teacher_path") + 1] == str(tmp_path / "out" / "base" / "model.pt")
    assert r2_cmd[r2_cmd.index("--teacher_path") + 1] == str(tmp_path / "out" / "round1" / "model.pt")
    assert r2_cmd[r2_cmd.index("--seed") + 1] == "3"
    # the rounds share one teacher cache (a round's agreement leaves the next round's labels there); the base has none
    shared = str(tmp_path / "out" / "teacher_cache")
    assert r1_cmd[r1_cmd.index("--cache_dir") + 1] == shared == r2_cmd[r2_cmd.index("--cache_dir") + 1]
    assert "--cache_dir" not in base_cmd
    assert all(c[1][c[1].index("--cpu_bf16") + 1] == "False" for c in fake.calls)  # float32 unless asked
    assert record["stopped"].startswith("agreement 0.9720") and record["final"].endswith("round2/model.pt")
    assert torch.load(tmp_path / "m.pt")["w"].item() == 3  # the final stage's weights, copied
    saved = json.loads((tmp_path / "out" / "recipe.json").read_text())
    assert [s["stage"] for s in saved["stages"]] == ["base", "round1", "round2"]
    assert [s.get("agreement") for s in saved["stages"]] == [None, 0.95, 0.972]


def test_max_rounds_bounds_the_rounds_and_zero_keeps_the_base(recipe, tmp_path):
    fake = FakeStages([0.5, 0.5, 0.5])
    record = recipe.run_recipe(ROOT, tmp_path, tmp_path / "a", max_rounds=2, run_stage=fake)
    assert [c[0] for c in fake.calls] == ["base", "round1", "round2"] and record["stopped"] == "max_rounds (2)"
    record = recipe.run_recipe(ROOT, tmp_path, tmp_path / "b", max_rounds=0, run_stage=FakeStages([]))
    assert record["final"].endswith("b/base/model.pt")


def test_a_rerun_skips_finished_stages_and_a_failed_stage_is_not_marked(recipe, tmp_path):
    with pytest.raises(RuntimeError, match="recipe stage failed"):
        recipe.run_recipe(ROOT, tmp_path, tmp_path / "out", run_stage=FakeStages([0.99], fail_at="round1"))
    assert (tmp_path / "out" / "base" / "stage.json").is_file()
    assert not (tmp_path / "out" / "round1" / "stage.json").exists() and not (tmp_path / "out" / "recipe.json").exists()
    again = FakeStages([0.99])
    record = recipe.run_recipe(ROOT, tmp_path, tmp_path / "out", run_stage=again)
    assert [c[0] for c in again.calls] == ["round1"] and len(record["stages"]) == 2


def test_overrides_reach_their_stage_as_command_line_values(recipe):
    cmd = recipe.stage_command(ROOT, recipe.ROUND_CONFIGS, {"max_epochs": 20, "lr": 1e-4, "dirs": ["a", "b"]})
    assert cmd[1:4] == ["-m", "monai.bundle", "run"] and cmd[cmd.index("--bundle_root") + 1] == str(ROOT)
    assert cmd[cmd.index("--max_epochs") + 1] == "20" and cmd[cmd.index("--dirs") + 1] == '["a", "b"]'
    # JSON booleans arrive from fire as strings; the stage must read them as booleans, 'false' as off
    flags = recipe.stage_command(ROOT, recipe.ROUND_CONFIGS, {"on": "true", "off": "false", "py": True, "s": "truer"})
    assert [flags[flags.index(f"--{k}") + 1] for k in ("on", "off", "py", "s")] == ["True", "False", "True", "truer"]


@pytest.mark.slow
def test_the_recipe_runs_through_monai_bundle_on_synthetic_tiles(tmp_path):
    images, _ = write_synthetic_dataset(tmp_path / "data", n=2)
    tiny = {"patch_size": 128, "patches_per_axis": 3, "max_epochs": 1, "batch_size": 2}
    proc = run_bundle_ok(
        BUNDLE,
        ("recipe",),
        cwd=tmp_path,
        dataset_dir=images,
        output_dir=tmp_path / "out",
        max_rounds=1,
        base_overrides=json.dumps(tiny),
        round_overrides=json.dumps({**tiny, "tile_repeats": 2}),
        timeout=900,
    )
    record = json.loads((tmp_path / "out" / "recipe.json").read_text())
    assert [s["stage"] for s in record["stages"]] == ["base", "round1"] and 0 <= record["stages"][1]["agreement"] <= 1
    assert (tmp_path / "out" / "model.pt").is_file() and "recipe: round1 finished" in proc.stdout + proc.stderr


def test_cpu_bf16_reaches_every_stage(recipe, tmp_path):
    fake = FakeStages([0.99])
    recipe.run_recipe(ROOT, tmp_path, tmp_path / "out", cpu_bf16=True, run_stage=fake)
    assert [c[0] for c in fake.calls] == ["base", "round1"]
    assert all(c[1][c[1].index("--cpu_bf16") + 1] == "True" for c in fake.calls)
