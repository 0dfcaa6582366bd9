"""Prototype (issue 17, measured and not adopted): a third network output, the distance to each nucleus's border
normalised to 1 at its centre (as HoVer-Net and StarDist learn), trained in one self-training round from the
teacher's purified instances, and its cores (distance > 0.5, half-way to the centre by the target's own definition)
used as watershed markers.

``train``: one round like ``configs/self_train.json`` (1200 steps of 8 random 256² crops, Adam 5e-5, from the
teacher's weights; the new output channel starts at zero) with the loss ``0.9 BCE + 0.1 CE + MSE(distance)`` over
the pixels purification keeps. ``predict``: the tile and its 180° rotation through a Gaussian sliding window, saving
the nucleus probability and the predicted distance. ``score``: instances by the bundle's rule (probability only) and
by distance-core markers, against the labels (read only to score).

    python -m bench.distance_head_prototype train --images ../shared/data/monuseg/train/images \
        --teacher_pred TEACHER_PRED --init bundles/ssimnet/models/model.pt --out OUT
    python -m bench.distance_head_prototype predict --ckpt OUT/model.pt --images ../shared/data/$DS/train/images \
        --out OUT/pred/$DS
    python -m bench.distance_head_prototype score --pred OUT/pred/$DS --labels ../shared/data/$DS/train/labels
"""

from __future__ import annotations

import time
from pathlib import Path

import fire
import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import UNet
from scipy import ndimage as ndi

from bench.harness.errors import flood_from_markers
from labelfree.core.imageio import find_label, list_images, load_instance_map, load_rgb
from labelfree.core.metrics import aji, panoptic_quality, pixel_scores
from labelfree.transforms.contour import fill_mask_holes, remove_small_objects
from labelfree.transforms.instances import instances_from_map, sequential_labels
from labelfree.transforms.purify_objects import purify_instances
from labelfree.transforms.soften import contact_lines, soften_instances
from labelfree.transforms.voronoi import voronoi_trilabel

HEAD = "model.2.conv"  # the UNet's last (transposed) convolution


def normalised_distance(inst: np.ndarray) -> np.ndarray:
    """Distance to each nucleus's border (contact lines count as border), divided by that nucleus's maximum."""
    lab = inst.astype(np.int64)
    core = (lab > 0) & ~contact_lines(lab)
    edt = ndi.distance_transform_edt(core)
    peak = np.zeros(lab.max() + 1)
    if lab.max() > 0:
        peak[1:] = ndi.maximum(edt, lab, index=np.arange(1, lab.max() + 1))
    return np.where(core, edt / np.maximum(peak[lab], 1e-6), 0.0).astype(np.float32)


def network(init: str) -> UNet:
    """The bundle's UNet with three outputs; a two-output checkpoint fills the first two, the third starts at 0."""
    net = UNet(2, 3, 3, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=0)
    state = dict(torch.load(init, weights_only=True))
    own = net.state_dict()
    if state[f"{HEAD}.bias"].shape[0] == 2:
        weight, bias = torch.zeros_like(own[f"{HEAD}.weight"]), torch.zeros_like(own[f"{HEAD}.bias"])
        weight[:, :2], bias[:2] = state[f"{HEAD}.weight"], state[f"{HEAD}.bias"]  # weight: (in, out, 3, 3)
        state[f"{HEAD}.weight"], state[f"{HEAD}.bias"] = weight, bias
    net.load_state_dict(state)
    return net


def train(images: str, teacher_pred: str, init: str, out: str, steps: int = 1200, seed: int = 0) -> None:
    """One self-training round with the distance output; writes ``OUT/model.pt`` (three outputs)."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    torch.set_num_threads(2)
    tiles = []
    for path in list_images(images):
        rgb = load_rgb(path)
        kept, ignore = purify_instances(rgb, load_instance_map(Path(teacher_pred) / f"{path.stem}_inst.tif"))
        soft, tri, dist = soften_instances(kept), voronoi_trilabel(kept), normalised_distance(kept)
        soft[ignore], tri[ignore], dist[ignore] = -1.0, 2, -1.0
        tiles.append((rgb.transpose(2, 0, 1).copy(), soft, tri, dist))
    net = network(init)
    opt = torch.optim.Adam(net.parameters(), lr=5e-5)
    size = 256

    def batch(n: int = 8) -> list[torch.Tensor]:
        items = []
        for _ in range(n):
            img, *maps = tiles[rng.integers(len(tiles))]
            y, x = rng.integers(0, img.shape[1] - size + 1), rng.integers(0, img.shape[2] - size + 1)
            arrays = [img[:, y : y + size, x : x + size].astype(np.float32) / 255]
            arrays += [m[y : y + size, x : x + size] for m in maps]
            k, flip = rng.integers(4), rng.random() < 0.5
            arrays = [np.rot90(a, k, axes=(-2, -1)) for a in arrays]
            items.append([np.ascontiguousarray(a[..., ::-1] if flip else a) for a in arrays])
        return [torch.from_numpy(np.stack(column)) for column in zip(*items)]

    net.train()
    t0 = time.time()
    for step in range(steps):
        x, soft, tri, dist = batch()
        z = net(x)
        known = soft >= 0
        bce = F.binary_cross_entropy_with_logits((z[:, 1] - z[:, 0])[known], soft[known])
        ce = F.cross_entropy(z[:, :2], tri.long(), ignore_index=2)
        mse = F.mse_loss(torch.sigmoid(z[:, 2])[dist >= 0], dist[dist >= 0])
        loss = 0.9 * bce + 0.1 * ce + mse
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            print(
                f"step {step} loss {loss.item():.4f} distance MSE {mse.item():.4f} {time.time() - t0:.0f} s", flush=True
            )
    torch.save(net.state_dict(), out_dir / "model.pt")
    print(f"done in {time.time() - t0:.0f} s")


@torch.inference_mode()
def predict(ckpt: str, images: str, out: str) -> None:
    """``OUT/<stem>.npy``: ``(2, H, W)`` float16, nucleus probability and predicted distance."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    net = network(ckpt).eval()
    inferer = SlidingWindowInferer((256, 256), sw_batch_size=8, overlap=0.25, mode="gaussian", padding_mode="reflect")
    for path in list_images(images):
        x = torch.from_numpy(load_rgb(path).transpose(2, 0, 1).copy()).float()[None] / 255
        z = (inferer(x, net) + inferer(x.flip(-2, -1), net).flip(-2, -1)) / 2
        prob, dist = torch.softmax(z[0, :2], 0)[1], torch.sigmoid(z[0, 2])
        np.save(out_dir / f"{path.stem}.npy", torch.stack([prob, dist]).numpy().astype(np.float16))


def core_markers(prob: np.ndarray, dist: np.ndarray, level: float = 0.5) -> np.ndarray:
    """Foreground ``prob > 0.25`` (the bundle's), split by the components of ``dist > level`` as markers."""
    fg = remove_small_objects(fill_mask_holes(prob > 0.25), 30)
    if not fg.any():
        return np.zeros(prob.shape, np.int32)
    return sequential_labels(flood_from_markers(fg, ndi.label((dist > level) & fg)[0]), 30)


def score(pred: str, labels: str) -> None:
    """Mean Dice / AJI / PQ of the two instance rules over the saved predictions."""
    rules = {
        "probability only (the bundle's rule)": lambda p, d: instances_from_map(p, 0.25, 30, 2.0, 1.0),
        "distance cores (> 0.5) as markers": core_markers,
    }
    rows = {name: [] for name in rules}
    for f in sorted(Path(pred).glob("*.npy")):
        prob, dist = np.load(f).astype(np.float32)
        gt = load_instance_map(find_label(labels, f.stem + ".png"))
        for name, rule in rules.items():
            inst = rule(prob, dist)
            rows[name].append((pixel_scores(gt > 0, inst > 0)["dice"], aji(gt, inst), panoptic_quality(gt, inst)["pq"]))
    for name, values in rows.items():
        print(f"{name}: " + " / ".join(f"{v:.3f}" for v in np.mean(values, axis=0)) + f" ({len(values)} tiles)")


if __name__ == "__main__":
    fire.Fire({"train": train, "predict": predict, "score": score})
