"""SSimNet self-training: a trained network's own nuclei, purified object by object, become the next round's labels.

For every training tile, the teacher checkpoint segments it as ``configs/inference.json`` does (its flips, threshold
and watershed; :class:`labelfree.engines.slides.BundleTileSegmenter`), keeping every object
(:data:`TEACHER_OVERRIDES`). Each predicted nucleus is scored against the rest of its tile
(:func:`labelfree.transforms.purify_objects.purify_instances`): confident ones are targets, the others are left out of
the loss with a margin, so the student is not taught the teacher's slivers and fragments. Targets are made on the
whole tile: each nucleus softened on its own (eq. 4; contact lines between touching nuclei at ``contact_value``,
:func:`labelfree.transforms.soften.soften_instances`: the rim value 0.5 by default here, background in
``configs/self_train.json`` since 0.7.0) and the Voronoi tri-label of the confident nuclei. The student starts from
the teacher's weights and sees random crops of whole tiles (not a fixed patch grid), so it does not learn the window
grid's phase.

No ground truth is read: the labels are the teacher's predictions, and the only rule for stopping is how much the
student still changes the masks (the round agreement, :func:`round_agreement`).
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from labelfree.core.imageio import atomic_path, load_rgb, save_text
from labelfree.core.metrics import pixel_scores
from labelfree.engines.runs import image_datalist
from labelfree.transforms.border_weight import border_weight as separation_weight
from labelfree.transforms.edge_distance import DISTANCE_UNIT, edge_distance
from labelfree.transforms.instances import MIN_REL_AREA
from labelfree.transforms.paste_nuclei import paste_touching_nuclei
from labelfree.transforms.purify_objects import purify_instances, uncertain_background
from labelfree.transforms.scale import double_labelled_tile, halve_labelled_tile
from labelfree.transforms.soften import contact_lines, soften_instances
from labelfree.transforms.voronoi import IGNORE_INDEX, voronoi_trilabel

from .data import load_training_tile

__all__ = [
    "IGNORED",
    "TEACHER_OVERRIDES",
    "teacher_rule",
    "self_training_targets",
    "contact_ring",
    "distance_target",
    "teacher_datalist",
    "student",
    "round_agreement",
]

#: the cache key holds the tile, the teacher's weights and :data:`TEACHER_OVERRIDES`, not the rest of the inference
#: rule: bump when the instances change (2: irregular objects re-split, 0.3.2; 3: the key holds TEACHER_OVERRIDES,
#: 0.6.1; 4: basins climbed, 0.6.2; the key of 0.8.0's TEACHER_OVERRIDES differs, with the same instances)
CACHE_VERSION = 4

#: how the teacher's inference differs from ``configs/inference.json``: every object it finds is kept
#: (``min_mean_prob`` 0, ``min_rel_area`` 0). The objects 0.6.0's inference drops (mean probability below the soft
#: labels' rim value) are the teacher's least certain ones; purification decides whether the loss trusts or ignores
#: them. Dropped before that, they would be taught as confident background and every round would shrink the masks (the
#: recipe run from nothing, seed 0: CPM-15 Dice 0.797 with 0.6.0's teacher, 0.847 with this one; docs/README.md,
#: Performance 0.6.1). The small objects 0.8.0's inference drops are likewise left to purification's own size rule,
#: which ignores them (with a margin) instead of teaching them as background. The teacher sees the tile and its 180°
#: rotation, both as they are: the stain-normalised view of inference 0.10.0 came after the shipped checkpoint was
#: trained, and the recipe keeps reproducing that checkpoint.
TEACHER_OVERRIDES = {"min_mean_prob": 0.0, "min_rel_area": 0.0, "stain_view": False}

#: the soft-label value of a pixel the loss leaves out (``scripts.loss.SSimNetLoss``)
IGNORED = -1.0


def contact_ring(inst: np.ndarray, contact_width: int = 1, ignore_width: int = 0) -> np.ndarray:
    """``(H, W)`` bool: the nucleus pixels near another nucleus that are not on the contact line itself, i.e. within
    ``ignore_width`` of another nucleus but not within ``contact_width`` (chessboard distance,
    :func:`labelfree.transforms.soften.contact_lines`). Left out of the loss, they let a student learn the gap between
    touching nuclei without being taught that every nucleus near another is smaller.

    Args:
        inst: ``(H, W)`` instance map of the confident nuclei.
        contact_width: the contact line's half-width in pixels.
        ignore_width: how far from another nucleus the ring reaches; 0: no ring (all ``False``).

    Raises:
        ValueError: ``ignore_width`` neither 0 nor a whole number above ``contact_width``.
    """
    if ignore_width == 0:
        return np.zeros(np.shape(inst), dtype=bool)
    if int(ignore_width) != ignore_width or ignore_width <= contact_width:
        raise ValueError(
            f"the ignored contact ring must reach beyond the contact line ({contact_width} px) or be 0, "
            f"got {ignore_width}"
        )
    return contact_lines(inst, int(ignore_width)) & ~contact_lines(inst, contact_width)


def self_training_targets(
    inst: np.ndarray,
    ignore: np.ndarray,
    contact_value: float = 0.5,
    contact_width: int = 1,
    contact_ignore_width: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft label and Voronoi tri-label of confident nuclei, with the ignored pixels marked in both.

    Args:
        inst: ``(H, W)`` instance map of the confident nuclei.
        ignore: ``(H, W)`` bool, pixels to leave out of the loss.
        contact_value: soft target of the lines where two nuclei touch
            (:func:`labelfree.transforms.soften.soften_instances`).
        contact_width: those lines' half-width in pixels (1: the pixels next to the other nucleus).
        contact_ignore_width: also leave out the nucleus pixels within this many pixels of another nucleus but beyond
            the contact line (:func:`contact_ring`); 0: none.

    Returns:
        ``soft`` ``(1, H, W)`` float32 (``IGNORED`` where ignored) and ``voronoi`` ``(1, H, W)`` uint8 (the tri-label's
        ignore value where ignored).
    """
    ignore = ignore | contact_ring(inst, contact_width, contact_ignore_width)
    soft = soften_instances(inst, contact_value=contact_value, contact_width=contact_width)
    soft[ignore] = IGNORED
    tri = voronoi_trilabel(inst)
    tri[ignore] = IGNORE_INDEX
    return soft[None], tri[None]


def distance_target(inst: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """The distance output's target: each confident nucleus pixel's distance to its own nucleus's edge, in units of
    :data:`~labelfree.transforms.edge_distance.DISTANCE_UNIT` pixels, ``IGNORED`` where the loss leaves pixels out.

    Args:
        inst: ``(H, W)`` instance map of the confident nuclei.
        ignore: ``(H, W)`` bool, pixels to leave out of the loss.

    Returns:
        ``(1, H, W)`` float32.
    """
    dist = edge_distance(inst) / np.float32(DISTANCE_UNIT)
    dist[ignore] = IGNORED
    return dist[None]


def _digest(path: str | os.PathLike) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]


def _save_teacher_map(npz: Path, inst: np.ndarray) -> None:
    with atomic_path(npz) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, teacher=inst)


def teacher_rule(
    stain_view: bool = False,
    auto_scale: bool = False,
    marker_depth: float | None = None,
    flips: Sequence[Sequence[int]] | None = None,
    resplit_irregular: bool | None = None,
) -> dict:
    """How the teacher's inference differs from ``configs/inference.json``: :data:`TEACHER_OVERRIDES` and the rounds'
    teacher options (``configs/self_train.json``'s ``teacher_*``, all off in the shipped recipe). The rule keys the
    teacher cache; ``auto_scale`` and the last three enter it only when set, so the default rounds keep their cached
    teacher labels. :func:`teacher_datalist` and :func:`round_agreement` take it, so teacher and student are segmented
    alike.

    Args:
        stain_view: the teacher's second pass sees the tile stain-normalised (inference 0.10.0's default); off: the
            tile and its 180° rotation as they are.
        auto_scale: the teacher segments a tile whose median object is under half the training tiles' median again at
            2x (inference's ``auto_scale``), so small crowded nuclei reach the student split; off: at the tile's own
            scale.
        marker_depth: the teacher's watershed marker depth in pixels (inference's ``marker_depth``); ``None``:
            inference's own. A shallower one splits more of the teacher's objects, so more contact lines are taught.
        flips: the teacher's views (inference's ``flips``: the spatial axes each pass flips, the passes' probabilities
            averaged); ``None``: inference's own (the tile and its 180° rotation).
        resplit_irregular: whether the teacher splits its irregular objects again at halved marker depths (inference's
            ``resplit_irregular``); ``None``: inference's own (on).

    Returns:
        inference config overrides.
    """
    rule = {**TEACHER_OVERRIDES, "stain_view": bool(stain_view)} | ({"auto_scale": True} if auto_scale else {})
    rule |= {"marker_depth": float(marker_depth)} if marker_depth is not None else {}
    rule |= {"flips": [[int(a) for a in axes] for axes in flips]} if flips is not None else {}
    return rule | ({"resplit_irregular": bool(resplit_irregular)} if resplit_irregular is not None else {})


def _teacher_file(cache: Path, tile: Path, teacher_digest: str, rule: dict | None = None) -> Path:
    """The cached teacher instance map of a tile, keyed by the tile's content, the teacher checkpoint and the teacher's
    inference rule (:func:`teacher_rule`; ``None``: :data:`TEACHER_OVERRIDES`)."""
    text = json.dumps(TEACHER_OVERRIDES if rule is None else rule, sort_keys=True)
    key = hashlib.sha1(Path(tile).read_bytes() + f"{teacher_digest}/{CACHE_VERSION}/{text}".encode()).hexdigest()[:16]
    return cache / f"{tile.stem}-{key}.npz"


def _segmenter(
    bundle_root: str | os.PathLike,
    ckpt_path: str | os.PathLike,
    device: str | torch.device | None,
    rule: dict | None = None,
):
    """This bundle's tile segmenter with ``ckpt_path`` and the teacher's rule (``rule``, :func:`teacher_rule`;
    ``None``: :data:`TEACHER_OVERRIDES`): the teacher and the round agreement's student are segmented alike."""
    from labelfree.engines.slides import BundleTileSegmenter

    # the training tiles are at the model's scale: the teacher never re-segments one at 2x by its nuclei's size
    # (inference's auto_scale), unless its rule says so; off before that option existed, so not in the cache key
    overrides = {"auto_scale": False, **(TEACHER_OVERRIDES if rule is None else rule), "ckpt_path": str(ckpt_path)}
    return BundleTileSegmenter(bundle_root, device=device, overrides=overrides)


def teacher_datalist(
    dataset_dir: str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    *,
    bundle_root: str | os.PathLike,
    teacher_path: str | os.PathLike,
    device: str | torch.device | None = None,
    repeats: int = 8,
    purify: bool = True,
    min_rel_area: float = MIN_REL_AREA,
    min_rel_contrast: float = 0.5,
    min_solidity: float = 0.8,
    margin: int = 2,
    patch_size: int = 256,
    contact_value: float = 0.5,
    contact_width: int = 1,
    contact_ignore_width: int = 0,
    paste_share: float = 0.0,
    paste_fraction: float = 0.15,
    half_scale_share: float = 0.0,
    double_scale_share: float = 0.0,
    seed: int = 0,
    distance_head: bool = False,
    border_weight: bool = False,
    border_weight_on_nuclei: bool = False,
    ignore_dark_background: bool = False,
    rule: dict | None = None,
    progress: bool = True,
) -> list[dict]:
    """Training items ``{"image", "soft", "voronoi", "source"}`` (and ``"dist"``, ``"weight"``) of whole tiles,
    labelled by the teacher.

    Every tile appears ``repeats`` times, so that an epoch draws that many random crops of it. The teacher's instance
    maps are cached in ``cache_dir`` (one ``.npz`` per tile, keyed by the tile's content and the teacher checkpoint):
    the teacher runs once per round, not once per run. A tile that cannot be read, or is smaller than
    ``patch_size``, is reported in one line and left out.

    Args:
        dataset_dir: folder of unlabelled tiles.
        cache_dir: where the teacher's predictions are cached (``None``: not cached).
        bundle_root: this bundle's folder (its ``configs/inference.json`` segments the tiles).
        teacher_path: the teacher checkpoint (a bare state dict or ``{"model": ...}``).
        device: where the teacher runs.
        repeats: items per tile.
        purify: score the teacher's nuclei and leave the unsure ones out of the loss; ``False`` trusts every object
            (the ablation's "all trusted" row).
        min_rel_area, min_rel_contrast, min_solidity, margin: object purification
            (:func:`labelfree.transforms.purify_objects.purify_instances`).
        patch_size: the crop size; smaller tiles are left out.
        contact_value: soft target of the lines where two of the teacher's nuclei touch (:func:`self_training_targets`).
        contact_width: those lines' half-width in pixels (:func:`self_training_targets`).
        contact_ignore_width: the ring beyond the contact lines left out of the loss (:func:`contact_ring`; 0: none).
        paste_share: the share of a tile's ``repeats`` items (rounded) that are synthetic copies with confident nuclei
            pasted against others (:func:`labelfree.transforms.paste_nuclei.paste_touching_nuclei`), each a draw of
            its own; 0: none, as in the 0.3.x rounds.
        paste_fraction: nuclei pasted per copy, as a fraction of the tile's confident nuclei.
        half_scale_share: the share of a tile's ``repeats`` items (rounded, taken from its plain copies) that show the
            tile and its targets at half the scale (:func:`labelfree.transforms.scale.halve_labelled_tile`), as a scan
            at half the magnification would: small touching nuclei to learn at the network's own input scale. A tile
            whose half is smaller than ``patch_size`` keeps plain copies. 0: none.
        double_scale_share: the share of a tile's ``repeats`` items (rounded, taken from its plain copies after the
            half-scale ones) that show the tile and its targets at twice the scale
            (:func:`labelfree.transforms.scale.double_labelled_tile`), as a scan at twice the magnification would:
            nuclei of four times the usual area, whole, to learn at the network's own input scale. 0: none.
        seed: the copies' random draws (one generator per tile and copy, so the order of the tiles does not matter).
        distance_head: add ``"dist"``, the target of the student's distance output (:func:`distance_target`).
        border_weight: add ``"weight"``, each pixel's loss weight: the U-Net's separation weight of the confident
            nuclei (:func:`labelfree.transforms.border_weight.border_weight`, its paper's w0 = 10 and σ = 5 px).
        border_weight_on_nuclei: that weight on the nucleus pixels near another nucleus too, not on the background
            alone (its ``on_nuclei``).
        ignore_dark_background: leave out of the loss, too, the background pixels as dark as the confident nuclei
            (:func:`labelfree.transforms.purify_objects.uncertain_background`), where the teacher may have missed one.
        rule: how the teacher's inference differs from ``configs/inference.json`` (:func:`teacher_rule`, which lists
            the rounds' teacher options: its stain view, auto-scale, marker depth, views and re-split); ``None``:
            ``teacher_rule()``, the shipped recipe's teacher. It keys the teacher cache.
        progress: show a progress bar.

    Raises:
        labelfree.engines.runs.RunError: missing or empty ``dataset_dir``.
        RuntimeError: no tile gave a usable label.
    """
    files = [Path(item["image"]) for item in image_datalist(dataset_dir)]
    rule = teacher_rule() if rule is None else rule
    teacher_digest = _digest(teacher_path)
    cache = Path(cache_dir) if cache_dir else None
    # built even when every tile is cached: building the network draws its first weights from torch's generator, which
    # the training's shuffling then continues, so a warm cache must draw them too or the round trains differently
    segment = _segmenter(bundle_root, teacher_path, device, rule)
    items: list[dict] = []
    # what every item of every tile is built with (:func:`_item`)
    contact = (contact_value, contact_width, contact_ignore_width)
    outputs = (distance_head, border_weight, border_weight_on_nuclei)
    skipped: list[str] = []
    iterator = files
    if progress:
        from tqdm import tqdm

        iterator = tqdm(files, desc="teacher labels", unit="tile")
    for path in iterator:
        rgb = load_training_tile(path, patch_size, skipped)
        if rgb is None:
            continue
        npz = _teacher_file(cache, path, teacher_digest, rule) if cache else None
        if npz is not None and npz.is_file():
            with np.load(npz) as z:
                inst = z["teacher"]
        else:
            inst = segment(rgb, path.name)
            if npz is not None:
                _save_teacher_map(npz, inst)
        if purify:
            kept, ignore = purify_instances(
                rgb,
                inst,
                min_rel_area=min_rel_area,
                min_rel_contrast=min_rel_contrast,
                min_solidity=min_solidity,
                margin=margin,
            )
        else:
            kept, ignore = inst, np.zeros(inst.shape, dtype=bool)
        if ignore_dark_background:
            ignore = ignore | uncertain_background(rgb, inst, kept, ignore)
        item = _item(rgb, kept, ignore, contact, outputs, path.name)
        copies = min(int(round(paste_share * repeats)), repeats)
        halves = min(int(round(half_scale_share * repeats)), repeats - copies)
        if min(rgb.shape[:2]) // 2 < patch_size:
            halves = 0
        plain = repeats - copies - halves
        doubles = min(int(round(double_scale_share * repeats)), plain)
        items.extend(dict(item) for _ in range(plain - doubles))
        if halves:
            half = _item(*halve_labelled_tile(rgb, kept, ignore), contact, outputs, path.name)
            items.extend(dict(half) for _ in range(halves))
        if doubles:
            double = _item(*double_labelled_tile(rgb, kept, ignore), contact, outputs, path.name)
            items.extend(dict(double) for _ in range(doubles))
        for copy in range(copies):
            rng = np.random.default_rng([seed, zlib.crc32(path.name.encode()), copy])
            pasted_rgb, pasted = paste_touching_nuclei(rgb, kept, ignore, fraction=paste_fraction, rng=rng)
            items.append(_item(pasted_rgb, pasted, ignore, contact, outputs, path.name))
    if not items:
        raise RuntimeError(
            f"no self-training label from the {len(files)} tiles in {dataset_dir}"
            + (f" ({', '.join(skipped)})" if skipped else "")
        )
    return items


def _item(
    rgb: np.ndarray,
    inst: np.ndarray,
    ignore: np.ndarray,
    contact: tuple[float, int, int],
    outputs: tuple[bool, bool, bool],
    source: str,
):
    """One training item; ``contact``: the contact lines' soft value and half-width, and the ignored ring's reach;
    ``outputs``: whether the item has a distance target and a loss weight, and whether that weight falls on the nuclei
    too."""
    ignore = ignore | contact_ring(inst, contact[1], contact[2])  # the distance target leaves the ring out too
    soft, tri = self_training_targets(inst, ignore, contact[0], contact[1])
    item = {"image": np.ascontiguousarray(rgb.transpose(2, 0, 1)), "soft": soft, "voronoi": tri, "source": source}
    distance, weight, on_nuclei = outputs
    if distance:
        item["dist"] = distance_target(inst, ignore)
    if weight:
        item["weight"] = separation_weight(inst, on_nuclei=on_nuclei)[None]
    return item


def student(network: torch.nn.Module, teacher_path: str | os.PathLike) -> torch.nn.Module:
    """``network`` with the weights of ``teacher_path``: each round continues from the last instead of starting afresh
    (``configs/self_train.json``'s ``student_init_path``, the teacher by default; another checkpoint, the base stage's,
    gives a student that learns the teacher's labels without its weights).

    A student with one output more than its teacher (the distance output, ``distance_head``) takes the teacher's
    weights for the outputs they share; the new output's weights start at 0 (it first predicts a distance of 0
    everywhere), so the student's segmentation starts where the teacher's is.
    """
    state = torch.load(teacher_path, map_location="cpu", weights_only=True)
    state = dict(state["model"] if "model" in state else state)
    own = network.state_dict()
    for key, value in state.items():
        target = own.get(key)
        if target is not None and target.shape != value.shape and _one_more_output(value, target):
            grown = torch.zeros_like(target)
            grown[tuple(slice(0, n) for n in value.shape)] = value
            state[key] = grown
    network.load_state_dict(state, strict=True)
    return network


def _one_more_output(teacher: torch.Tensor, student: torch.Tensor) -> bool:
    """Whether ``student`` is ``teacher`` with one more output channel (a bias, or a final (transposed) convolution's
    weight, whose output channels are axis 0 or 1)."""
    if teacher.ndim != student.ndim:
        return False
    grown = [i for i, (a, b) in enumerate(zip(teacher.shape, student.shape)) if a != b]
    return len(grown) == 1 and grown[0] <= 1 and student.shape[grown[0]] == teacher.shape[grown[0]] + 1


def round_agreement(
    dataset_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    *,
    bundle_root: str | os.PathLike,
    teacher_path: str | os.PathLike,
    student_path: str | os.PathLike,
    device: str | torch.device | None = None,
    out_file: str | os.PathLike | None = None,
    rule: dict | None = None,
) -> float:
    """Mean Dice between the teacher's masks (cached by :func:`teacher_datalist`) and the student's on the training
    tiles: how much a round still changed the masks. Close to 1, another round would learn what it already predicts.
    Tiles without a cached teacher prediction are left out; ``out_file``, when given, receives the figure as JSON
    (written atomically). ``rule``: the teacher's, as :func:`teacher_datalist`'s, so both are segmented alike. The
    student's maps are cached in ``cache_dir`` too, as a teacher's: a next round reading the same cache
    (``scripts.recipe.run_recipe`` gives its rounds one) starts from them."""
    rule = teacher_rule() if rule is None else rule
    teacher_digest, student_digest = _digest(teacher_path), _digest(student_path)
    segment = _segmenter(bundle_root, student_path, device, rule)
    scores = []
    for item in image_datalist(dataset_dir):
        path = Path(item["image"])
        npz = _teacher_file(Path(cache_dir), path, teacher_digest, rule)
        if not npz.is_file():
            continue
        with np.load(npz) as z:
            teacher = z["teacher"] > 0
        mine = segment(load_rgb(path), path.name)
        # the student is the next round's teacher, segmenting by the same rule: cached under its own digest, its maps
        # are that round's labels when it shares this cache (the recipe's rounds do), not segmented a second time
        _save_teacher_map(_teacher_file(Path(cache_dir), path, student_digest, rule), mine)
        scores.append(pixel_scores(teacher, mine > 0)["dice"])
    agreement = float(np.mean(scores)) if scores else float("nan")
    print(f"round agreement (mean mask Dice, teacher vs student, {len(scores)} tiles): {agreement:.4f}")
    if out_file is not None:
        report = {"round_agreement": agreement, "tiles": len(scores), "teacher": str(teacher_path)}
        save_text(out_file, json.dumps(report, indent=4) + "\n")
    return agreement
