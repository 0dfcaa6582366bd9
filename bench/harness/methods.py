"""The methods the comparison harness runs: the two bundles and the classic label-free baselines.

Every method writes, flat in a prediction folder and for every image ``<stem>``, the project's output contract
(``<stem>_inst.tif`` nuclei instances, ``<stem>_seg.png`` class map, ``<stem>_overlay.png``) and returns its timings.
The class map is what the degeneration counts and the oracle class pick read: for two classes it is 0/255 with 255 =
nuclei, for more it holds the class index with nuclei = the last class. Every naming rule here is label-free: the
nuclei cluster is the darkest one (lowest mean RGB), as a user without labels would pick it.
"""

from __future__ import annotations

import hashlib

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.color import rgb2hed
from skimage.filters import threshold_otsu
from skimage.measure import label as connected_components
from tqdm import tqdm

from bench.harness.baselines import otsu_haematoxylin_watershed
from labelfree.core.imageio import list_images, load_rgb
from labelfree.transforms.contour import remove_small_objects
from labelfree.transforms.instances import instances_from_map
from labelfree.transforms.stain import has_tissue
from labelfree.core.writer import write_segmentation

__all__ = ["METHODS", "Method", "REPO", "cluster_classes", "otsu_connected_components", "run_monai_bundle"]

REPO = Path(__file__).resolve().parents[2]

#: a method's runner: (image folder, run folder, seed, options) → timings; predictions go to ``<run folder>/pred``
Runner = Callable[[Path, Path, int, dict], dict]


@dataclass(frozen=True)
class Method:
    """A method of the comparison.

    Attributes:
        name: the name used on the command line and in the tables.
        stochastic: whether seeds change the result (deterministic methods run once).
        n_classes: classes in its ``_seg.png`` (for the degeneration counts and the oracle pick); a run that
            overrides it (``num_classes`` of a bundle) reports ``n_classes`` in its timings.
        run: the runner.
        description: one line for the tables.
        fingerprint: what the result depends on besides seed and options (a shipped checkpoint's digest): a run
            folder made with another fingerprint is never reused.
    """

    name: str
    stochastic: bool
    n_classes: int
    run: Runner
    description: str
    fingerprint: Callable[[], str] | None = None


def otsu_connected_components(rgb: np.ndarray, min_size: int = 30) -> np.ndarray:
    """Otsu threshold on the haematoxylin channel, then connected components (no splitting of touching nuclei)."""
    hema = rgb2hed(rgb)[..., 0]
    mask = remove_small_objects(hema > threshold_otsu(hema), min_size)
    return connected_components(mask, connectivity=1).astype(np.int32)


def cluster_classes(rgb: np.ndarray, k: int, kind: str, seed: int, n_fit: int = 50_000) -> np.ndarray:
    """Cluster the RGB pixels of a tile and name the clusters from brightest (0) to darkest (``k - 1``, nuclei).

    Args:
        rgb: ``(H, W, 3)`` uint8.
        k: number of clusters.
        kind: ``"kmeans"`` (scikit-learn ``MiniBatchKMeans``) or ``"gmm"`` (``GaussianMixture``, full covariances).
        seed: random state of the initialisation and of the pixel subsample the model is fitted on.
        n_fit: pixels sampled to fit the model (all pixels are then assigned).

    Returns:
        ``(H, W)`` int64 class map.
    """
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.mixture import GaussianMixture

    x = rgb.reshape(-1, 3).astype(np.float64) / 255.0
    rng = np.random.default_rng(seed)
    fit = x[rng.choice(len(x), size=min(n_fit, len(x)), replace=False)]
    if kind == "kmeans":
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096).fit(fit)
        centres = model.cluster_centers_
    elif kind == "gmm":
        model = GaussianMixture(n_components=k, covariance_type="full", random_state=seed).fit(fit)
        centres = model.means_
    else:
        raise ValueError(f"kind must be 'kmeans' or 'gmm', got {kind!r}")
    raw = model.predict(x)
    order = np.argsort(-centres.sum(axis=1), kind="stable")  # brightest first, darkest (nuclei) last
    inverse = np.empty(k, dtype=np.int64)
    inverse[order] = np.arange(k)
    return inverse[raw].reshape(rgb.shape[:2])


def _seg_image(classes: np.ndarray, k: int) -> np.ndarray:
    return (classes * (255 if k == 2 else 1)).astype(np.uint8)


def _per_image(segment: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]], k: int, name: str) -> Runner:
    """A runner that applies ``segment(rgb, seed) -> (instances, classes)`` to every tile; blank tiles give nothing."""

    def run(images: Path, run_dir: Path, seed: int, options: dict) -> dict:
        pred = run_dir / "pred"
        seconds = []
        for path in tqdm(list_images(images), desc=name, unit="image"):
            rgb = load_rgb(path)
            t0 = time.perf_counter()
            if has_tissue(rgb):
                inst, classes = segment(rgb, seed)
            else:
                inst, classes = np.zeros(rgb.shape[:2], np.int32), np.zeros(rgb.shape[:2], np.int64)
            seconds.append(time.perf_counter() - t0)
            write_segmentation(pred, path.stem, rgb, inst, seg=_seg_image(classes, k))
        return {"inference_seconds_per_image": float(np.mean(seconds)) if seconds else 0.0}

    return run


def _otsu_cc(rgb: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    inst = otsu_connected_components(rgb)
    return inst, (inst > 0).astype(np.int64)


def _otsu_ws(rgb: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    inst = otsu_haematoxylin_watershed(rgb)
    return inst, (inst > 0).astype(np.int64)


def _clusters(kind: str, k: int) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    def segment(rgb: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        classes = cluster_classes(rgb, k, kind, seed)
        return instances_from_map(classes == k - 1), classes

    return segment


def run_monai_bundle(args: list[str], log: Path) -> float:
    """Run ``python -m monai.bundle run ARGS`` from the repository root; returns its wall time in seconds."""
    t0 = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.run(
            [sys.executable, "-m", "monai.bundle", "run", *args], stdout=fh, stderr=subprocess.STDOUT, cwd=REPO
        )
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"monai.bundle run failed ({tail[0][:200]}); see {log}")
    return time.perf_counter() - t0


def _overrides(options: dict) -> list[str]:
    return [a for key, value in sorted(options.items()) for a in (f"--{key}", str(value))]


def _bundle(bundle: str, pseudo_labels: bool) -> Runner:
    """A runner that trains ``bundles/<bundle>`` label-free on the images, then runs its inference on them.

    Training resumes from its own checkpoints, and a finished model is not retrained. ``options`` are passed to
    both configs as ``--key value`` overrides (for example ``{"max_epochs": 30}``).
    """
    configs = REPO / "bundles" / bundle / "configs"

    def run(images: Path, run_dir: Path, seed: int, options: dict) -> dict:
        n = len(list_images(images))
        model, train_dir = run_dir / "model.pt", run_dir / "train"
        common = ["--bundle_root", str(configs.parent), "--dataset_dir", str(images), "--seed", str(seed)]
        timings = {}
        train_args = ["--config_file", str(configs / "train.json"), *common, "--output_dir", str(train_dir)]
        train_args += ["--model_path", str(model), *_overrides(options)]
        seconds_file = run_dir / "train_seconds.txt"
        if pseudo_labels:
            # build the pseudo-label cache first so that its cost is reported apart from training
            label_file = run_dir / "pseudo_label_seconds.txt"
            if not label_file.is_file():
                secs = run_monai_bundle([*train_args, "--run_id", "train#datalist"], run_dir / "pseudo_labels.log")
                label_file.write_text(f"{secs:.2f}\n")
            timings["pseudo_label_seconds_per_image"] = float(label_file.read_text()) / max(n, 1)
        if not (model.is_file() and seconds_file.is_file()):
            secs = run_monai_bundle(train_args, run_dir / "train.log")
            seconds_file.write_text(f"{secs:.2f}\n")
        timings["train_seconds"] = float(seconds_file.read_text())
        timings.update(_infer(configs, images, run_dir, seed, {"ckpt_path": str(model), **options}))
        if "num_classes" in options:
            timings["n_classes"] = int(options["num_classes"])
        return timings

    return run


def _infer(configs: Path, images: Path, run_dir: Path, seed: int, options: dict) -> dict:
    """Run a bundle's ``inference.json`` on ``images`` into ``run_dir/pred``; returns its wall time per image."""
    args = ["--config_file", str(configs / "inference.json"), "--bundle_root", str(configs.parent)]
    args += ["--dataset_dir", str(images), "--seed", str(seed), "--output_dir", str(run_dir / "pred")]
    secs = run_monai_bundle([*args, *_overrides(options)], run_dir / "inference.log")
    return {"inference_seconds_per_image": secs / max(len(list_images(images)), 1)}


def _shipped(bundle: str) -> Runner:
    """A runner that segments the images with ``bundles/<bundle>``'s shipped checkpoint (no training on them): how a
    lab uses the bundle on its own tiles, and the check that a model trained on one data set carries to another."""
    configs = REPO / "bundles" / bundle / "configs"

    def run(images: Path, run_dir: Path, seed: int, options: dict) -> dict:
        return _infer(configs, images, run_dir, seed, options)

    return run


def _checkpoint_digest(bundle: str) -> Callable[[], str]:
    def digest() -> str:
        return hashlib.sha1((REPO / "bundles" / bundle / "models" / "model.pt").read_bytes()).hexdigest()[:12]

    return digest


def _recipe_digest(bundle: str) -> Callable[[], str]:
    """The digest of a bundle's ``configs/common.json``, where its recipe's defaults live: a run trained under other
    defaults (another K, another mixture input) is never reused for the current ones."""

    def digest() -> str:
        return hashlib.sha1((REPO / "bundles" / bundle / "configs" / "common.json").read_bytes()).hexdigest()[:12]

    return digest


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("ssimnet", True, 2, _bundle("ssimnet", pseudo_labels=True), "SSimNet bundle (label-free training)"),
        Method(
            "dcgn",
            True,
            3,
            _bundle("dcgn", pseudo_labels=False),
            "DCGN bundle (label-free training)",
            _recipe_digest("dcgn"),
        ),
        Method(
            "ssimnet_shipped",
            False,
            2,
            _shipped("ssimnet"),
            "SSimNet bundle, shipped checkpoint (trained on MoNuSeg train), default inference",
            _checkpoint_digest("ssimnet"),
        ),
        Method(
            "dcgn_shipped",
            False,
            3,
            _shipped("dcgn"),
            "DCGN bundle, shipped checkpoint (trained on MoNuSeg train)",
            _checkpoint_digest("dcgn"),
        ),
        Method("otsu_cc", False, 2, _per_image(_otsu_cc, 2, "otsu_cc"), "Otsu on haematoxylin + connected comps"),
        Method("otsu_ws", False, 2, _per_image(_otsu_ws, 2, "otsu_ws"), "Otsu on haematoxylin + watershed"),
        Method("kmeans", True, 2, _per_image(_clusters("kmeans", 2), 2, "kmeans"), "mini-batch k-means on RGB, k = 2"),
        Method("kmeans3", True, 3, _per_image(_clusters("kmeans", 3), 3, "kmeans3"), "k-means on RGB, k = 3"),
        Method("gmm", True, 2, _per_image(_clusters("gmm", 2), 2, "gmm"), "GMM on RGB, k = 2"),
        Method("gmm3", True, 3, _per_image(_clusters("gmm", 3), 3, "gmm3"), "GMM on RGB, k = 3 (redundant class)"),
    )
}
