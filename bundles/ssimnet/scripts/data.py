"""SSimNet training data: purified pseudo-label patches, computed once per image and cached on disk.

For every tile: pseudo labels (``labelfree.transforms.pseudolabel``) → soft label of the whole hard mask (eq. 4) and
Voronoi tri-label of the whole tile (centres of the pseudo-label instances) → grid patches ranked by USMI, the best
``alpha`` kept → crops of image, soft label and tri-label. Soft and Voronoi labels are made on the whole tile and then
cropped, so nuclei cut by a patch border keep their true softness and their neighbours' Voronoi edges. No ground
truth is read anywhere here.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
from monai.transforms import Compose

from labelfree.core.imageio import InvalidImageError, atomic_path, load_rgb
from labelfree.engines.runs import describe_failure, image_datalist
from labelfree.transforms.patches import USMIPatchSelectiond
from labelfree.transforms.pseudolabel import PseudoLabeld
from labelfree.transforms.soften import SoftenLabeld
from labelfree.transforms.voronoi import VoronoiTriLabeld

__all__ = ["patch_pipeline", "image_patches", "load_training_tile", "patch_datalist"]

#: bumped whenever the pseudo labels of a tile change: 2, clusters chosen per tile (0.2.0); 3, basins climbed (0.6.2)
CACHE_VERSION = 3


def patch_pipeline(
    *,
    patch_size: int,
    n_per_axis: int,
    alpha: float,
    n_clusters: int | str,
    contour_on: str = "membership",
    seed: int = 0,
) -> Compose:
    """The transforms that turn ``{"image": (3, H, W) uint8}`` into purified pseudo-label patches: pseudo labels →
    soft label of the whole hard mask (eq. 4) and Voronoi tri-label of the whole tile → grid patches ranked by USMI,
    the best ``alpha`` kept and cropped from ``image``, ``soft`` and ``voronoi``. Returns a list of patch dictionaries
    (MONAI's cropping-by-samples convention). A tile without tissue gives no instance and therefore no patch."""
    return Compose(
        [
            PseudoLabeld("image", n_clusters=n_clusters, contour_on=contour_on, seed=seed),
            SoftenLabeld("pseudo_mask", output_key="soft"),
            VoronoiTriLabeld("pseudo_inst", output_key="voronoi"),
            USMIPatchSelectiond(
                ["image", "soft", "voronoi"],
                mask_key="pseudo_inst",
                patch_size=patch_size,
                n_per_axis=n_per_axis,
                alpha=alpha,
            ),
        ]
    )


def image_patches(
    rgb: np.ndarray,
    *,
    patch_size: int,
    n_per_axis: int,
    alpha: float,
    n_clusters: int | str,
    contour_on: str = "membership",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Purified pseudo-label patches of one tile, stacked (:func:`patch_pipeline`).

    Args:
        rgb: ``(H, W, 3)`` uint8.
        patch_size, n_per_axis, alpha: patch grid and USMI purification (see ``labelfree.transforms.patches``).
        n_clusters, contour_on: FCM clusters and active-contour input of the pseudo labels
            (``labelfree.transforms.pseudolabel.PseudoLabel``).
        seed: pseudo-label seed.

    Returns:
        ``image`` ``(n, 3, P, P)`` uint8, ``soft`` ``(n, 1, P, P)`` float32, ``voronoi`` ``(n, 1, P, P)`` uint8,
        ``location`` ``(n, 2)`` and ``usmi`` ``(n,)``; ``n`` may be 0 (blank tile, or no regular patch).
    """
    p = patch_size
    chain = patch_pipeline(
        patch_size=p, n_per_axis=n_per_axis, alpha=alpha, n_clusters=n_clusters, contour_on=contour_on, seed=seed
    )
    patches = chain({"image": np.ascontiguousarray(rgb.transpose(2, 0, 1))})

    def stack(key: str, channels: int, dtype: type) -> np.ndarray:
        if not patches:
            return np.zeros((0, channels, p, p), dtype=dtype)
        return np.stack([np.asarray(q[key]) for q in patches]).astype(dtype)

    return {
        "image": stack("image", 3, np.uint8),
        "soft": stack("soft", 1, np.float32),
        "voronoi": stack("voronoi", 1, np.uint8),
        "location": np.array([q["patch_location"] for q in patches], dtype=np.int64).reshape(-1, 2),
        "usmi": np.array([q["usmi"] for q in patches], dtype=np.float64),
    }


def load_training_tile(path: Path, patch_size: int, skipped: list[str]) -> np.ndarray | None:
    """A training tile as ``(H, W, 3)`` uint8, or ``None`` when it cannot be read (reported in one line) or is
    smaller than ``patch_size``; the reason is appended to ``skipped`` for the run's final error message."""
    try:
        rgb = load_rgb(path)
    except (InvalidImageError, OSError) as exc:
        reason = describe_failure(exc, str(path))
        print(f"left out: {path}: {reason}", file=sys.stderr)
        skipped.append(f"{path.name} ({reason})")
        return None
    if min(rgb.shape[:2]) < patch_size:
        skipped.append(f"{path.name} (smaller than {patch_size} px)")
        return None
    return rgb


def _cache_key(path: Path, params: dict) -> str:
    h = hashlib.sha1(path.read_bytes())
    h.update(json.dumps({**params, "version": CACHE_VERSION}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def patch_datalist(
    dataset_dir: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    *,
    patch_size: int,
    n_per_axis: int,
    alpha: float,
    n_clusters: int | str,
    contour_on: str = "membership",
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Training items ``{"image", "soft", "voronoi", "source"}`` of every tile in ``dataset_dir``.

    Patches are cached in ``cache_dir`` (one ``.npz`` per tile, keyed by the file's content and the parameters), so
    the pseudo labels are computed once, not every epoch or every run.

    A tile that cannot be read is reported in one line and left out.

    Raises:
        labelfree.engines.runs.RunError: missing or empty ``dataset_dir``.
        RuntimeError: no tile yielded a usable patch (all blank or unreadable, or all smaller than the patch size).
    """
    files = [Path(item["image"]) for item in image_datalist(dataset_dir)]
    params = dict(
        patch_size=patch_size, n_per_axis=n_per_axis, alpha=alpha, n_clusters=n_clusters, contour_on=contour_on, seed=seed
    )
    cache = Path(cache_dir) if cache_dir else None
    items: list[dict] = []
    skipped: list[str] = []
    iterator = files
    if progress:
        from tqdm import tqdm

        iterator = tqdm(files, desc="pseudo labels", unit="tile")
    for path in iterator:
        npz = cache / f"{path.stem}-{_cache_key(path, params)}.npz" if cache else None
        if npz is not None and npz.is_file():
            with np.load(npz) as z:
                data = {k: z[k] for k in z.files}
        else:
            rgb = load_training_tile(path, patch_size, skipped)
            if rgb is None:
                continue
            data = image_patches(rgb, **params)
            if npz is not None:
                with atomic_path(npz) as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez(fh, **data)
        for i in range(len(data["image"])):
            items.append(
                {"image": data["image"][i], "soft": data["soft"][i], "voronoi": data["voronoi"][i], "source": path.name}
            )
    if not items:
        raise RuntimeError(
            f"no training patch from the {len(files)} tiles in {dataset_dir}: they are blank, have no nucleus-like "
            f"structure, or are smaller than {patch_size} px" + (f" ({', '.join(skipped)})" if skipped else "")
        )
    return items
