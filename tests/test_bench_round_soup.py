import pytest
import torch

from bench.round_soup import average_state_dicts, main


def test_average_is_elementwise_and_keeps_dtypes_and_integer_entries():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3), "h": torch.tensor([1.0], dtype=torch.float16)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5), "h": torch.tensor([2.0], dtype=torch.float16)}
    soup = average_state_dicts([a, b])
    assert torch.equal(soup["w"], torch.tensor([2.0, 4.0]))
    assert soup["h"].dtype == torch.float16 and soup["h"].item() == 1.5
    assert soup["n"].item() == 3  # counters are the first's, not averaged
    assert torch.equal(average_state_dicts([a])["w"], a["w"])


def test_mismatched_or_missing_state_dicts_are_refused():
    with pytest.raises(ValueError, match="nothing to average"):
        average_state_dicts([])
    with pytest.raises(ValueError, match="other keys"):
        average_state_dicts([{"w": torch.zeros(2)}, {"v": torch.zeros(2)}])
    with pytest.raises(ValueError, match="shape"):
        average_state_dicts([{"w": torch.zeros(2)}, {"w": torch.zeros(3)}])


def test_main_writes_the_mean_checkpoint(tmp_path):
    paths = []
    for i, value in enumerate((0.0, 1.0, 5.0)):
        paths.append(tmp_path / f"round{i}.pt")
        torch.save({"w": torch.full((2, 2), value)}, paths[-1])
    out = tmp_path / "soup" / "model.pt"
    main(",".join(str(p) for p in paths), str(out))
    assert torch.equal(torch.load(out, weights_only=True)["w"], torch.full((2, 2), 2.0))
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.pt"]  # nothing half-written beside it
