"""Ablation of SSimNet self-training: the prototype that measured each ingredient on its own before it went into
``bundles/ssimnet/configs/self_train.json``.

One round, 1200 steps of 8 random 256² crops of whole tiles (the bundle's 40 epochs of 30 steps), Adam at 5e-5, from
a teacher checkpoint's weights, on one of three label sets:

- ``fcm``: the original FCM pseudo labels (``labelfree.transforms.pseudolabel``, per-tile cluster count) softened as
  in the paper: the control that asks whether the gain is only more training;
- ``all``: the teacher's instances (a prediction folder of ``<stem>_inst.tif``), every object trusted;
- ``purify``: the same, with object-level purification (unsure objects and a 2 px margin left out of the loss).

It differs from the bundle in two details: the teacher's rim is two pixels at 0.5 (scikit-image's inner boundary)
rather than :func:`labelfree.transforms.soften.soften_instances`' one, and the prediction folder is the harness's run
of the teacher (the same inference config). Labels are never read. Score the written ``model.pt`` with
``python -m bench.harness compare ... --methods ssimnet_shipped --options '{"ssimnet_shipped": {"ckpt_path": ...}}'``.

    python -m bench.self_training_ablation --mode purify --images ../shared/data/monuseg/train/images \
        --teacher_pred PRED --init bundles/ssimnet/models/model.pt --out OUT
"""

from __future__ import annotations

import time
from pathlib import Path

import fire
import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import UNet
from skimage.segmentation import find_boundaries

from labelfree.core.imageio import list_images, load_instance_map, load_rgb
from labelfree.transforms.purify_objects import purify_instances
from labelfree.transforms.pseudolabel import PseudoLabel
from labelfree.transforms.soften import soften_mask
from labelfree.transforms.voronoi import voronoi_trilabel


def _labels(mode: str, rgb: np.ndarray, pred: Path | None, stem: str) -> tuple[np.ndarray, np.ndarray]:
    if mode == "fcm":
        res = PseudoLabel(n_clusters="auto", contour_on="membership", seed=0)(rgb.transpose(2, 0, 1).copy())
        return soften_mask(res.mask.astype(bool)).astype(np.float32), voronoi_trilabel(res.instances)
    inst = load_instance_map(pred / f"{stem}_inst.tif").astype(np.int64)
    kept, ignore = purify_instances(rgb, inst) if mode == "purify" else (inst, np.zeros(inst.shape, bool))
    rim = find_boundaries(kept, mode="inner") & (kept > 0)
    soft = soften_mask((kept > 0) & ~rim)
    soft[rim] = 0.5
    soft[ignore] = -1.0
    tri = voronoi_trilabel(kept)
    tri[ignore] = 2
    return soft.astype(np.float32), tri


def run(
    mode: str, images: str, out: str, init: str, teacher_pred: str | None = None, steps: int = 1200, seed: int = 0
) -> None:
    """Train one round and write ``OUT/model.pt``."""
    if mode not in ("fcm", "all", "purify"):
        raise SystemExit(f"--mode must be fcm, all or purify, not {mode!r}")
    if mode != "fcm" and not teacher_pred:
        raise SystemExit("--teacher_pred is needed: the teacher's prediction folder (<stem>_inst.tif)")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    torch.set_num_threads(2)
    pred = Path(teacher_pred) if teacher_pred else None
    tiles = []
    t0 = time.time()
    for path in list_images(images):
        rgb = load_rgb(path)
        soft, tri = _labels(mode, rgb, pred, path.stem)
        tiles.append((rgb.transpose(2, 0, 1).copy(), soft, tri))
    ignored = np.mean([(t[1] < 0).mean() for t in tiles])
    print(f"labels {time.time() - t0:.0f} s; ignored fraction {ignored:.3f}", flush=True)

    net = UNet(2, 3, 2, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=0)
    net.load_state_dict(torch.load(init, weights_only=True))
    opt = torch.optim.Adam(net.parameters(), lr=5e-5)
    lam, p = 0.9, 256

    def batch(n: int = 8):
        xs, ss, ts = [], [], []
        for _ in range(n):
            img, soft, tri = tiles[rng.integers(len(tiles))]
            h, w = soft.shape
            y, x = rng.integers(0, h - p + 1), rng.integers(0, w - p + 1)
            a = img[:, y : y + p, x : x + p].astype(np.float32) / 255
            s, t = soft[y : y + p, x : x + p], tri[y : y + p, x : x + p]
            k = rng.integers(4)
            a, s, t = np.rot90(a, k, (1, 2)), np.rot90(s, k), np.rot90(t, k)
            if rng.random() < 0.5:
                a, s, t = a[:, :, ::-1], s[:, ::-1], t[:, ::-1]
            xs.append(a.copy())
            ss.append(s.copy())
            ts.append(t.copy())
        return (
            torch.from_numpy(np.stack(xs)),
            torch.from_numpy(np.stack(ss)),
            torch.from_numpy(np.stack(ts).astype(np.int64)),
        )

    net.train()
    t0 = time.time()
    for it in range(steps):
        x, s, t = batch()
        z = net(x)
        margin = z[:, 1] - z[:, 0]
        known = s >= 0
        bce = F.binary_cross_entropy_with_logits(margin[known], s[known]) if known.any() else z.sum() * 0
        ce = F.cross_entropy(z, t, ignore_index=2) if (t != 2).any() else z.sum() * 0
        loss = lam * bce + (1 - lam) * ce
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % 100 == 0:
            print(f"step {it} loss {loss.item():.4f} {time.time() - t0:.0f} s", flush=True)
    torch.save(net.state_dict(), out_dir / "model.pt")
    print(f"done in {time.time() - t0:.0f} s: {out_dir / 'model.pt'}")


if __name__ == "__main__":
    fire.Fire(run)
