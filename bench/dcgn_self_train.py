"""One self-training round for DCGN, as a benchmark: the network's own purified nuclei as an extra, label-free target.

SSimNet's rounds (``bundles/ssimnet/scripts/self_training.py``) gave that bundle its largest gain; DCGN never had one.
This script runs one round outside the bundle so that it can be screened before anything in the bundle changes
(rule: ``bench/results/dcgn_self_train/rule.txt``):

1. the teacher checkpoint segments every training image with DCGN's ``inference.json``, keeping every object;
2. the targets are made as SSimNet's rounds make theirs: confident nuclei kept
   (:func:`labelfree.transforms.purify_objects.purify_instances`), unsure objects with a margin and background about
   as dark as the nuclei left out (:func:`~labelfree.transforms.purify_objects.uncertain_background`), the lines where
   two kept nuclei touch taught as background (:func:`labelfree.transforms.soften.contact_lines`);
3. the student starts from the teacher's weights and trains on ``train.json``'s own crops, colour augmentation, flips
   and normalisation, on DCGN's loss plus ``beta`` × the binary cross-entropy of its nuclei channel against those
   targets (``beta`` 0 is the control: the same further steps of DCGN's loss alone); ``half_scale_share`` of the
   items show the tile and its targets at half the scale, as SSimNet's rounds do since its 0.11.0
   (:func:`labelfree.transforms.scale.halve_labelled_tile`).

No label is read: the targets are the teacher's predictions, and the nuclei channel is the one whose softmax is highest
on the kept nuclei. The student's weights go to ``<out>/model.pt`` (a bare state dict, as the bundle ships), to be
scored like any DCGN checkpoint through the comparison harness (``--options '{"dcgn_shipped": {"ckpt_path": ...}}'``).

    python -m bench.dcgn_self_train run --images ../shared/data/monuseg/train/images --out OUT --beta 1
    python -m bench.dcgn_self_train colours --images ../shared/data/cpm15/train/images --ckpts TEACHER,OUT/model.pt
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "dcgn"
SHIPPED = BUNDLE / "models" / "model.pt"

#: how the teacher's inference differs from ``inference.json``: every object is kept, so that purification, not the
#: inference's drop rules, decides what the loss trusts (SSimNet's ``TEACHER_OVERRIDES`` for the same reason)
TEACHER_OVERRIDES = {"min_mean_softmax": 0.0, "min_rel_area": 0.0}

#: the keys that are cropped and flipped together: the network input, the mixture's features and the round's targets
PAIRED_KEYS = ["image", "features", "target", "weight"]


def purified(rgb: np.ndarray, inst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's confident nuclei and the pixels the loss leaves out, as SSimNet's rounds decide them.

    Returns:
        ``kept``: ``(H, W)`` instance map of the confident nuclei; ``ignore``: ``(H, W)`` bool.
    """
    from labelfree.transforms.purify_objects import purify_instances, uncertain_background

    kept, ignore = purify_instances(rgb, inst)
    return kept, ignore | uncertain_background(rgb, inst, kept, ignore)


def round_targets(kept: np.ndarray, ignore: np.ndarray, rim_ignore: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The student's target and loss weight of one tile.

    Args:
        kept: ``(H, W)`` the confident nuclei (:func:`purified`).
        ignore: ``(H, W)`` bool, the pixels the loss leaves out.
        rim_ignore: pixels within this distance of the nuclei's outer edge (inside or outside the union of the kept
            nuclei; the contact lines between touching nuclei are inside it and stay taught) are left out too, so
            the target says what is inside and between nuclei but not where their edge is; 0 teaches the edge.

    Returns:
        ``target``: ``(1, H, W)`` float32, 1 on the kept nuclei off their contact lines, else 0;
        ``weight``: ``(1, H, W)`` float32, 0 where the loss leaves the pixel out, else 1.
    """
    from scipy import ndimage as ndi

    from labelfree.transforms.soften import contact_lines

    fg = kept > 0
    target = fg & ~contact_lines(kept, 1)
    ignore = np.asarray(ignore, bool)
    if rim_ignore > 0:
        rim = ndi.binary_dilation(fg, iterations=rim_ignore) & ~ndi.binary_erosion(fg, iterations=rim_ignore)
        ignore = ignore | rim
    return target[None].astype(np.float32), (~ignore)[None].astype(np.float32)


def teacher_targets(
    images: list[Path], ckpt_path: Path, half_dir: Path | None = None, rim_ignore: int = 0
) -> tuple[list, list]:
    """Segment every image with the teacher; return the round's items (path and target arrays) at the tile's scale
    and, when ``half_dir`` is given, at half its scale (the halved tile written there as a PNG); ``rim_ignore`` as in
    :func:`round_targets`."""
    from tqdm import tqdm

    from labelfree.core.imageio import load_rgb, save_png
    from labelfree.engines.slides import BundleTileSegmenter
    from labelfree.transforms.scale import halve_labelled_tile

    segment = BundleTileSegmenter(BUNDLE, overrides={**TEACHER_OVERRIDES, "ckpt_path": str(ckpt_path)})
    items, halves = [], []
    for path in tqdm(images, desc="teacher", unit="tile"):
        rgb = load_rgb(path)
        kept, ignore = purified(rgb, segment(rgb, path.name))
        target, weight = round_targets(kept, ignore, rim_ignore)
        items.append({"image": str(path), "target": target, "weight": weight})
        if half_dir is not None:
            half_rgb, half_kept, half_ignore = halve_labelled_tile(rgb, kept, ignore)
            half_path = save_png(half_dir / f"{path.stem}.png", half_rgb)
            target, weight = round_targets(half_kept, half_ignore, rim_ignore)
            halves.append({"image": str(half_path), "target": target, "weight": weight})
    return items, halves


def nuclei_channel(network: torch.nn.Module, loader, device: torch.device) -> int:
    """The output channel whose mean softmax is highest on the kept nuclei (one batch per tile, no gradient)."""
    network.eval()
    sums, count = None, 0.0
    with torch.no_grad():
        for batch in loader:
            prob = torch.softmax(network(batch["image"].to(device)).float(), dim=1)
            on = (batch["target"].to(device) * batch["weight"].to(device)) > 0
            s = (prob * on).sum(dim=(0, 2, 3))
            sums = s if sums is None else sums + s
            count += float(on.sum())
    network.train()
    if count == 0:
        raise RuntimeError("the teacher kept no nucleus on any training tile: nothing to self-train on")
    return int(torch.argmax(sums / count))


def masked_bce(prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of ``prob`` against ``target`` over the pixels whose ``weight`` is 1 (0 if none)."""
    p = prob.clamp(1e-6, 1 - 1e-6)
    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p))
    return (bce * weight).sum() / weight.sum().clamp_min(1.0)


def run(
    images: str,
    out: str,
    beta: float = 1.0,
    teacher: str | None = None,
    seed: int = 0,
    max_epochs: int = 20,
    learning_rate: float = 2e-4,
    num_threads: int = 2,
    half_scale_share: float = 0.0,
    rim_ignore: int = 0,
) -> Path:
    """Run one round and write ``<out>/model.pt`` and ``<out>/round.json``; returns the checkpoint path.

    Args:
        images: folder of training tiles (no labels are read).
        out: output folder.
        beta: weight of the self-training term; 0 trains on DCGN's loss alone (the control).
        teacher: the teacher checkpoint (default: the bundle's shipped ``models/model.pt``).
        seed: seed of the crops, augmentation and shuffling.
        max_epochs: epochs of the round (each: every tile once, as ``train.json``'s batches of its crops).
        learning_rate: Adam's constant rate.
        num_threads: torch CPU threads.
        half_scale_share: the share of the items that show a tile and its targets at half the scale (0, 0.25, 0.5 or
            0.75): each tile is then 4 items, as it is and halved in that share, and ``max_epochs`` (a multiple of 4)
            counts passes over as many items as there are tiles, so the round takes the same steps.
        rim_ignore: see :func:`round_targets` (0: the BCE teaches the nuclei's edge as well).
    """
    from monai.data import CacheDataset, DataLoader
    from monai.utils import set_determinism
    from tqdm import tqdm

    from labelfree.core.imageio import atomic_path, save_text
    from labelfree.engines.runs import image_datalist, readable_images
    from labelfree.engines.slides import bundle_parser

    torch.set_num_threads(num_threads)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = Path(teacher) if teacher else SHIPPED
    paths = [Path(d["image"]) for d in readable_images(image_datalist(images))]
    start = time.perf_counter()
    repeats = 4
    halved = int(round(half_scale_share * repeats))
    if halved != half_scale_share * repeats or not 0 <= halved < repeats:
        raise ValueError(f"half_scale_share must be 0, 0.25, 0.5 or 0.75, got {half_scale_share}")
    if halved and max_epochs % repeats:
        raise ValueError(f"with half-scale items max_epochs must be a multiple of {repeats}, got {max_epochs}")
    tiles, halves = teacher_targets(paths, ckpt, out_dir / "half_tiles" if halved else None, rim_ignore)
    items = tiles * (repeats - halved) + halves * halved if halved else tiles
    passes = max_epochs // repeats if halved else max_epochs
    teacher_s = time.perf_counter() - start

    set_determinism(seed=seed)
    parser = bundle_parser(BUNDLE, {"seed": seed, "num_threads": num_threads}, "train.json")
    if parser.get_parsed_content("input_mode") != "native" or parser.get_parsed_content("target_key") != "features":
        raise ValueError("the round is written for the default recipe: native-resolution crops, stain features")
    # train.json crops and flips the image and its features; the round's targets must follow the same draws
    parser["train#crop#keys"] = PAIRED_KEYS
    transforms = parser["train#preprocessing#transforms"]
    for i, t in enumerate(transforms):
        if isinstance(t, dict) and t.get("_target_") == "RandFlipd":
            parser[f"train#preprocessing#transforms#{i}#keys"] = PAIRED_KEYS
    device = torch.device("cpu")
    network = parser.get_parsed_content("network").to(device)
    network.load_state_dict(torch.load(ckpt, map_location=device, weights_only=True))
    dcgn_loss = parser.get_parsed_content("loss")
    dataset = CacheDataset(items, parser.get_parsed_content("train#preprocessing"), cache_rate=1.0, num_workers=0)
    loader = DataLoader(dataset, batch_size=1, shuffle=True, num_workers=0)
    channel = nuclei_channel(network, loader, device)
    optimiser = torch.optim.Adam(network.parameters(), lr=learning_rate)
    network.train()
    log = []
    start = time.perf_counter()
    for epoch in range(passes):
        totals = np.zeros(2)
        for batch in tqdm(loader, desc=f"epoch {epoch + 1}/{passes}", unit="step", leave=False):
            image, features = batch["image"].to(device), batch["features"].to(device)
            logits = network(image)
            mixture = dcgn_loss(logits, features)
            loss = mixture
            if beta > 0:
                prob = torch.softmax(logits.float(), dim=1)[:, channel : channel + 1]
                term = masked_bce(prob, batch["target"].to(device), batch["weight"].to(device))
                loss = mixture + beta * term
            else:
                term = torch.zeros(())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            totals += [float(mixture.detach()), float(term.detach())]
        log.append({"epoch": epoch + 1, "dcgn_loss": totals[0] / len(loader), "bce": totals[1] / len(loader)})
        print(f"epoch {epoch + 1}: DCGN loss {log[-1]['dcgn_loss']:.4f}, BCE {log[-1]['bce']:.4f}", flush=True)
    train_s = time.perf_counter() - start
    model_path = out_dir / "model.pt"
    with atomic_path(model_path) as tmp:
        torch.save(network.state_dict(), tmp)
    record = {
        "teacher": str(ckpt),
        "beta": beta,
        "seed": seed,
        "max_epochs": max_epochs,
        "half_scale_share": half_scale_share,
        "rim_ignore": rim_ignore,
        "steps": passes * len(loader),
        "learning_rate": learning_rate,
        "nuclei_channel": channel,
        "tiles": len(tiles),
        "teacher_seconds": round(teacher_s, 1),
        "train_seconds": round(train_s, 1),
        "epochs": log,
    }
    save_text(out_dir / "round.json", json.dumps(record, indent=2) + "\n")
    print(f"wrote {model_path} ({train_s / 60:.1f} min of training, nuclei channel {channel})")
    return model_path


def colours(images: str, ckpts: str | Sequence[str] = "", num_threads: int = 2) -> None:
    """Print, per checkpoint (comma-separated paths; nothing at all: the shipped one), the means over ``images``
    of: the share of a tile's pixels whose softmax argmax is the nuclei class (named as the bundle names it), the same
    share after the inference's mixture step, and the mean and standard deviation of the nuclei class's first feature
    (haematoxylin concentration), weighted by its softmax. Label-free: it describes which colours each checkpoint
    calls nuclei."""
    from bench.variant_stats import checkpoint_list
    from labelfree.core.imageio import list_images, load_rgb
    from labelfree.engines.slides import BundleTileSegmenter, use_bundle_scripts

    torch.set_num_threads(num_threads)
    use_bundle_scripts(BUNDLE)
    from scripts.classes import haematoxylin_order, tile_mixture_posterior

    for ckpt in checkpoint_list(ckpts):
        ckpt = ckpt or SHIPPED
        segment = BundleTileSegmenter(BUNDLE, overrides={"ckpt_path": str(Path(ckpt).resolve())})
        rows = []
        for path in list_images(images):
            rgb = load_rgb(path)
            d = segment.network_pass(rgb, path.name)
            prob = torch.softmax(d["pred"], 0).numpy()
            k = prob.shape[0]
            nuclei = haematoxylin_order(prob.argmax(0), rgb, k)[-1]
            post = tile_mixture_posterior(prob, d["features"]).argmax(0)
            haematoxylin = np.asarray(d["features"])[0].ravel()
            w = prob[nuclei].ravel()
            mean = float((haematoxylin * w).sum() / w.sum())
            sd = float(np.sqrt(((haematoxylin - mean) ** 2 * w).sum() / w.sum()))
            share_after = float((post == haematoxylin_order(post, rgb, k)[-1]).mean())
            rows.append((float((prob.argmax(0) == nuclei).mean()), share_after, mean, sd))
        m = np.mean(rows, axis=0)
        print(
            f"{ckpt}: nuclei share {m[0]:.3f} (softmax), {m[1]:.3f} (after the mixture step); "
            f"nuclei haematoxylin mean {m[2]:.3f}, sd {m[3]:.3f} ({len(rows)} tiles)"
        )


if __name__ == "__main__":
    import fire

    fire.Fire({"run": run, "colours": colours})
