import numpy as np
import torch
from skimage.draw import disk

from bench.dcgn_self_train import masked_bce, purified, round_targets


def _tile_with_nuclei(centres, radius=9, size=96):
    """A pale pink tile with dark purple discs: haematoxylin-rich nuclei on eosin stroma."""
    rgb = np.zeros((size, size, 3), np.uint8)
    rgb[...] = (235, 180, 200)
    inst = np.zeros((size, size), np.int32)
    for i, (r, c) in enumerate(centres, start=1):
        rr, cc = disk((r, c), radius, shape=(size, size))
        rgb[rr, cc] = (90, 50, 140)
        inst[rr, cc] = i
    return rgb, inst


def test_round_targets_teach_kept_nuclei_and_their_contact_line_as_background():
    # two touching discs and three apart: all look alike, so all are confident
    rgb, inst = _tile_with_nuclei([(20, 20), (20, 37), (70, 20), (70, 70), (20, 75)])
    target, weight = round_targets(*purified(rgb, inst))
    assert target.shape == weight.shape == (1, 96, 96) and target.dtype == np.float32
    assert target[0, 20, 20] == 1 and target[0, 70, 70] == 1  # nucleus centres are nuclei
    assert target[0, 50, 50] == 0 and weight[0, 50, 50] == 1  # stroma is taught as background
    # the line where the two touching discs meet is background, and it is in the loss
    line = (inst > 0) & (target[0] == 0)
    assert line[20, 28:30].any() and (weight[0][line] == 1).all()


def test_round_targets_leave_a_sliver_and_its_margin_out_of_the_loss():
    rgb, inst = _tile_with_nuclei([(20, 20), (20, 60), (70, 20), (70, 70)])
    inst[45:47, 30:33] = 9  # a 2x3 fragment the teacher found: far below the tile's typical nucleus
    rgb[45:47, 30:33] = (90, 50, 140)
    target, weight = round_targets(*purified(rgb, inst))
    assert target[0, 45, 31] == 0 and weight[0, 45, 31] == 0  # neither nucleus nor background
    assert weight[0, 44, 31] == 0  # its margin is left out too
    assert weight[0, 20, 20] == 1 and target[0, 20, 20] == 1


def test_masked_bce_counts_only_the_pixels_in_the_loss():
    prob = torch.tensor([[[[0.9, 0.1], [0.5, 0.99]]]])
    target = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    weight = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    expected = -np.log(0.9)  # both weighted pixels are right at 0.9
    assert abs(float(masked_bce(prob, target, weight)) - expected) < 1e-6
    assert float(masked_bce(prob, target, torch.zeros_like(weight))) == 0.0  # nothing in the loss
    wrong = masked_bce(prob, 1 - target, weight)
    assert float(wrong) > float(masked_bce(prob, target, weight))


def test_rim_ignore_leaves_the_outer_edge_out_but_keeps_the_contact_line_taught():
    _, inst = _tile_with_nuclei([(40, 30), (40, 47), (75, 75)], radius=9)
    taught_edge = round_targets(inst, np.zeros(inst.shape, bool))[1][0]
    target, weight = round_targets(inst, np.zeros(inst.shape, bool), rim_ignore=2)
    assert taught_edge.all()  # without it every pixel is in the loss
    assert weight[0, 75, 75] == 1 and target[0, 75, 75] == 1  # a nucleus's inside is taught
    assert weight[0, 75, 75 + 9] == 0 and weight[0, 75, 75 + 10] == 0  # its edge, inside and out, is not
    assert weight[0, 5, 5] == 1 and target[0, 5, 5] == 0  # far background is
    # the line between the touching discs, away from their outer edge, is taught as background
    assert weight[0, 40, 38] == 1 and target[0, 40, 38] == 0


def test_colours_describes_what_a_checkpoint_calls_nuclei(capsys, tmp_path):
    from bench.dcgn_self_train import BUNDLE, colours
    from labelfree.core.imageio import list_images, load_rgb, save_png
    from labelfree.sample import sample_dir

    tile = load_rgb(list_images(sample_dir() / "images")[0])[:256, :256]
    save_png(tmp_path / "tile.png", tile)
    colours(str(tmp_path), str(BUNDLE / "models" / "model.pt"))
    line = capsys.readouterr().out.strip().splitlines()[-1]
    numbers = [float(w) for w in line.replace(",", " ").replace(";", " ").replace("(", " ").split() if _is_number(w)]
    share, share_after, mean, sd = numbers[:4]
    assert line.endswith("(1 tiles)")
    assert 0 < share < 1 and 0 < share_after < 1  # some, not all, of a tissue tile is nuclei
    assert mean > 0 and sd > 0  # the nuclei class holds haematoxylin


def _is_number(word):
    try:
        float(word)
    except ValueError:
        return False
    return True
