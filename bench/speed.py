"""Benchmark: seconds per tile of every inference pipeline, side by side in one run, as ratios against the network alone.

Each row is the *marginal* cost of one more tile (process start-up, model loading and the first tile excluded): the
pipelines run on the same ``tiles`` tiles, one after the other, ``rounds`` times in turn, and the median round is
reported, so a busy moment of the machine does not land on one row only. Twenty tiles by default (five before
2026-12-05): a bundle runs its post-processing behind the network, and the run ends by waiting for the last tile's
post-processing (about 0.15 s for SSimNet), a one-off cost like the start-up that five tiles spread over a fifth
each; twenty also sample MoNuSeg's tiles better (the first five are among its densest: the pseudo labels take 0.47
s on them, 0.35 s on twenty). Rows:

* the SSimNet U-Net alone under MONAI's ``SlidingWindowInferer`` (256², overlap 0.25, Gaussian, float32) on tiles
  already in memory: the reference (1×) of every SSimNet row; the same under bfloat16 autocast (what the bundle
  uses on a CPU that computes bfloat16 in hardware) and on ONNX Runtime (what both bundles use on other CPUs when the
  ``onnx`` extra is installed; ``bench.network_backends`` compares every runtime). The reference keeps the issue's
  overlap of 0.25 (:data:`REFERENCE_OVERLAP`) whatever the bundle uses; a row times the network with the bundle's own
  windows;
* the SSimNet bundle's ``inference.json`` as shipped (two passes: the tile and its 180° rotation), with one pass, with
  four flips, with test-time fine-tuning and four flips (the default before 0.2.1), and without each speed change
  (float32; post-processing in the foreground; the 0.25 window overlap of 0.5.0 and before);
* DCGN's network alone (its 512² window, float32 and bfloat16) and its bundle (float32: bfloat16 is an option there,
  it moved DCGN's CPM-15 scores by -0.003), also with bfloat16, with post-processing in the foreground and with the
  classes read off the softmax itself (without 0.4.0's mixture posterior), and with the 0.25 window overlap of 0.4.2
  and before;
* the pseudo labels alone (``labelfree.transforms.pseudolabel.PseudoLabel``), and Otsu on haematoxylin + watershed.

``--profile True`` also runs each bundle row once under ``cProfile`` with post-processing in the foreground and splits
its seconds per tile into reading, network, fine-tuning, instances, writing and the rest (``speed_profile.md``).

    python -m bench.speed --images ../shared/data/monuseg/train/images --out bench/results/speed
"""

from __future__ import annotations

import cProfile
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import fire
import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer

from bench.harness.baselines import otsu_haematoxylin_watershed
from bench.report_files import save_report
from labelfree.core.imageio import list_images, load_rgb
from labelfree.engines.onnx_runtime import OnnxRuntimeInferer, onnxruntime_available
from labelfree.engines.slides import bundle_parser
from labelfree.transforms.pseudolabel import PseudoLabel

REPO = Path(__file__).resolve().parents[1]

#: (row name, bundle, overrides of its inference.json, what it is)
FOUR_FLIPS = [[], [-1], [-2], [-2, -1]]
BUNDLE_ROWS: tuple[tuple[str, str, dict, str], ...] = (
    ("ssimnet", "ssimnet", {}, "SSimNet bundle, default (the tile, and its stain-normalised copy rotated by 180°)"),
    (
        "ssimnet_no_stain_view",
        "ssimnet",
        {"stain_view": False},
        "SSimNet bundle, `--stain_view False` (the tile and its 180° rotation as they are: 0.9.x)",
    ),
    ("ssimnet_no_flips", "ssimnet", {"flip_tta": False}, "SSimNet bundle, `--flip_tta False` (one pass)"),
    (
        "ssimnet_recolour_after_pass",
        "ssimnet",
        {"flip_inferer#background_recolour": False},
        "SSimNet bundle, default with the stain view re-coloured after the first pass, on the network's thread (0.11.2)",
    ),
    ("ssimnet_four_flips", "ssimnet", {"flips": FOUR_FLIPS}, "SSimNet bundle, four flips (two stain-normalised)"),
    (
        "ssimnet_finetune_four_flips",
        "ssimnet",
        {"finetune": True, "flips": FOUR_FLIPS},
        "SSimNet bundle, `--finetune True`, four flips (the default before 0.2.1)",
    ),
    (
        "ssimnet_torch",
        "ssimnet",
        {"cpu_onnxruntime": False},
        "SSimNet bundle, default without ONNX Runtime (PyTorch's kernels; the same where bfloat16 is native)",
    ),
    (
        "ssimnet_fp32",
        "ssimnet",
        {"cpu_bf16": False, "cpu_onnxruntime": False},
        "SSimNet bundle, default with a float32 network on PyTorch",
    ),
    (
        "ssimnet_overlap25",
        "ssimnet",
        {"sliding_window_inferer#overlap": 0.25},
        "SSimNet bundle, default with the windows of 0.5.0 and before (overlap 0.25: 25 windows a tile, not 16)",
    ),
    (
        "ssimnet_no_resplit",
        "ssimnet",
        {"resplit_irregular": False},
        "SSimNet bundle, default without re-splitting irregular objects (the 0.3.1 instances)",
    ),
    (
        "ssimnet_foreground",
        "ssimnet",
        {"postprocessing_threads": 0},
        "SSimNet bundle, default with post-processing in the foreground",
    ),
    ("dcgn", "dcgn", {}, "DCGN bundle, default (nuclei)"),
    (
        "dcgn_overlap25",
        "dcgn",
        {"window_overlap": 0.25},
        "DCGN bundle, default with the windows of 0.4.2 and before (overlap 0.25: 9 windows a tile, not 4)",
    ),
    ("dcgn_torch", "dcgn", {"cpu_onnxruntime": False}, "DCGN bundle, default without ONNX Runtime (PyTorch's kernels)"),
    ("dcgn_bf16", "dcgn", {"cpu_bf16": True}, "DCGN bundle, `--cpu_bf16 True` (not the default: CPM-15 AJI -0.002)"),
    ("dcgn_foreground", "dcgn", {"postprocessing_threads": 0}, "DCGN bundle, post-processing in the foreground"),
    (
        "dcgn_softmax_classes",
        "dcgn",
        {"class_posterior": "network"},
        "DCGN bundle, classes read off the softmax itself (0.3.x, no mixture posterior)",
    ),
)

#: files of the inference post-processing that call the shared steps; the same steps called from the pseudo labels of
#: test-time fine-tuning belong to the fine-tuning stage
_POST = ("transforms/instances.py", "scripts/classes.py")

#: profile stages: (name, (file, function) whose cumulative time is the stage's, files it must be called from (None:
#: any), stages whose calls made from the stage's own file are taken out of it)
STAGES: tuple[tuple[str, tuple[str, str], tuple[str, ...] | None, tuple[str, ...]], ...] = (
    ("reading", ("core/imageio.py", "load_rgb"), None, ()),
    ("fine-tuning (pseudo labels, training)", ("scripts/finetune.py", "_finetune"), None, ()),
    ("network", ("monai/inferers/utils.py", "sliding_window_inference"), None, ()),
    # the dictionary transform only, as MONAI's Compose calls it (its array transform is called from it: counted once)
    ("stain normalisation", ("transforms/stain_normalise.py", "__call__"), ("monai/transforms/transform.py",), ()),
    # SSimNet's stain view (0.10.0): the re-coloured copy its inferer makes for the second pass
    ("stain view (re-colouring)", ("transforms/stain_normalise.py", "__call__"), ("engines/inferers.py",), ()),
    ("blank-tile check", ("transforms/stain.py", "has_tissue"), _POST, ()),
    ("instances", ("transforms/instances.py", "instances_from_map"), _POST, ()),
    ("mixture posterior", ("scripts/classes.py", "tile_mixture_posterior"), None, ()),
    ("class naming", ("scripts/classes.py", "__call__"), None, ("blank-tile check", "instances", "mixture posterior")),
    ("writing (overlay, PNG, TIFF)", ("core/writer.py", "write_segmentation"), None, ()),
)


def _tiles(images: str, tiles: int) -> list[Path]:
    files = list_images(images)[: tiles + 1]  # the first is the warm-up
    if len(files) < 2:
        raise SystemExit(f"need at least 2 images in {images}")
    return files


def _marginal(times: list[float]) -> float:
    """Seconds per tile after the first (warm-up) tile: ``times`` are the completion times of each tile."""
    return (times[-1] - times[0]) / (len(times) - 1)


#: overlap of the network-alone reference, the issue's "MONAI sliding window (256², overlap 0.25)": every bundle row is
#: a ratio against this fixed cost, whatever windows the bundle itself uses (SSimNet 0.5.1 and DCGN 0.4.3 overlap their
#: windows by 1/32 of a side: 8 and 16 pixels)
REFERENCE_OVERLAP = 0.25


def shipped_network(
    bundle: str, device: str | torch.device = "cpu", overlap: float | None = REFERENCE_OVERLAP
) -> tuple[torch.nn.Module, SlidingWindowInferer]:
    """The bundle's network with its shipped weights (eval mode, on ``device``), and MONAI's own sliding window with
    the bundle's window, batch and weighting (the bundle's subclass only adds padding for tiles smaller than the
    window) at ``overlap`` (``None``: the bundle's own)."""
    parser = _bundle_parser(bundle)
    net = parser.get_parsed_content("network_def").eval().to(device)
    net.load_state_dict(torch.load(REPO / "bundles" / bundle / "models" / "model.pt", map_location=device))
    sw = parser.get_parsed_content("sliding_window_inferer")
    return net, SlidingWindowInferer(
        roi_size=sw.roi_size,
        sw_batch_size=sw.sw_batch_size,
        overlap=sw.overlap if overlap is None else overlap,
        mode=sw.mode,
    )


def tile_tensors(files: list[Path]) -> list[torch.Tensor]:
    """Each tile as the networks' input: ``(1, 3, H, W)`` float32 in [0, 1]."""
    return [torch.from_numpy(load_rgb(f).copy()).permute(2, 0, 1)[None].float() / 255.0 for f in files]


def time_network(
    bundle: str,
    files: list[Path],
    bf16: bool,
    threads: int,
    onnxruntime: bool = False,
    overlap: float | None = REFERENCE_OVERLAP,
) -> float:
    """The bundle's network alone, MONAI's sliding window on tiles already in memory (input in [0, 1]); on ONNX
    Runtime (:class:`labelfree.engines.onnx_runtime.OnnxRuntimeInferer`) when ``onnxruntime``; ``overlap`` as
    :func:`shipped_network`."""
    torch.set_num_threads(threads)
    net, inferer = shipped_network(bundle, overlap=overlap)
    inferer = OnnxRuntimeInferer(inferer, threads=threads) if onnxruntime else inferer
    times = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for x in tile_tensors(files):
            inferer(x, net)
            times.append(time.perf_counter())
    return _marginal(times)


def _bundle_parser(bundle: str, overrides: dict | None = None) -> ConfigParser:
    """The bundle's ``inference.json`` with its ``bundle_root`` and ``overrides`` set (and its ``scripts`` importable)."""
    return bundle_parser(REPO / "bundles" / bundle, overrides)


def time_bundle(bundle: str, images: Path, overrides: dict, threads: int, profile: bool = False) -> dict:
    """Run a bundle's inference in process on the tiles in ``images``; marginal seconds per tile (and the profile)."""
    # the bundle's own thread settings (SSimNet's network on one thread behind two post-processing threads): the row
    # is the bundle as shipped; ``threads`` is kept for a bundle that leaves torch's count alone, and is torch's count
    # again afterwards, so the rows that follow do not inherit the bundle's; so is numpy's BLAS thread count, which the
    # bundles cap too (labelfree.core.parallel.set_cpu_threads)
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    try:
        with threadpool_limits():  # records the BLAS limits and restores them on the way out
            return _time_bundle(bundle, images, overrides, profile)
    finally:
        torch.set_num_threads(threads)


def _time_bundle(bundle: str, images: Path, overrides: dict, profile: bool) -> dict:
    from ignite.engine import Events

    with tempfile.TemporaryDirectory(prefix="speed-") as tmp:
        over = dict(overrides, dataset_dir=str(images), output_dir=str(Path(tmp) / "out"))
        if profile:
            over["postprocessing_threads"] = 0  # a serial run, so that each stage's seconds add up
        parser = _bundle_parser(bundle, over)
        if profile and "flip_inferer" in parser.get("", {}):
            # the stain view re-colours on the calling thread too: cProfile sees only the thread it runs on
            parser["flip_inferer#background_recolour"] = False
        parser.get_parsed_content("initialize")
        evaluator = parser.get_parsed_content("evaluator")
        times: list[float] = []
        prof = cProfile.Profile() if profile else None

        def done(_engine: object) -> None:
            times.append(time.perf_counter())
            if prof is not None and len(times) == 1:
                prof.enable()  # from the end of the warm-up tile: one-time costs stay out of the profile

        evaluator.add_event_handler(Events.ITERATION_COMPLETED, done)
        evaluator.run()
        if prof is not None:
            prof.disable()
        times[-1] = time.perf_counter()  # the last tile is done when the run returns (background post-processing)
        if evaluator.failures:
            raise RuntimeError(f"{bundle} failed on {evaluator.failures}")
        result = {"seconds_per_tile": _marginal(times)}
        if prof is not None:
            result["stages"] = _stages(prof, len(times) - 1, result["seconds_per_tile"])
    return result


def _posix(file: str) -> str:
    return file.replace(os.sep, "/")


def _cumulative(stats: dict, file: str, func: str, from_caller: Callable[[tuple], bool] | None = None) -> float:
    """Cumulative seconds of function ``func`` of ``file`` in ``pstats.Stats(...).stats`` (``{(file, line, func): (cc,
    nc, tottime, cumtime, {caller: (.., .., tt, ct)})}``), over the calls from the callers ``from_caller`` accepts (a
    caller key is ``(file, line, func)``), or over every call."""
    seconds = 0.0
    for (f, _line, name), v in stats.items():
        if _posix(f).endswith(file) and name == func:
            seconds += v[3] if from_caller is None else sum(c[3] for key, c in v[4].items() if from_caller(key))
    return seconds


def _stages(prof: cProfile.Profile, n_tiles: int, seconds_per_tile: float) -> dict[str, float]:
    """Seconds per tile of each stage of :data:`STAGES` over ``n_tiles`` profiled tiles, from the profile's cumulative
    times; the rest of ``seconds_per_tile`` is what no stage names."""
    stats = pstats.Stats(prof).stats

    def called_from(file: str, func: str, callers: tuple[str, ...] | None) -> float:
        # only the calls made from the named files, when they are named
        return _cumulative(stats, file, func, None if callers is None else lambda key: _posix(key[0]).endswith(callers))

    where = {stage: target for stage, target, _, _ in STAGES}
    out: dict[str, float] = {}
    for stage, (file, func), callers, nested in STAGES:
        inner = sum(called_from(*where[n], (file,)) for n in nested)
        out[stage] = called_from(file, func, callers) - inner
    out = {k: v / n_tiles for k, v in out.items()}
    out["other (conversions, softmax, engine)"] = max(seconds_per_tile - sum(out.values()), 0.0)
    return {k: round(v, 4) for k, v in out.items() if v > 0.0005}


#: stages of the pseudo labels: (name, file, function, the calling functions counted (None: every call))
PSEUDO_LABEL_STAGES: tuple[tuple[str, str, str, tuple[str, ...] | None], ...] = (
    ("stain separation (colour table, Vahadane, concentrations)", "transforms/stain.py", "separate_stains", None),
    ("CIELAB colour table of the haematoxylin image", "transforms/fcm.py", "cielab_palette", None),
    ("fuzzy c-means (k = 3 and 2)", "transforms/fcm.py", "__call__", None),
    ("active contour (k = 3 and 2)", "transforms/contour.py", "__call__", None),
    ("instances (k = 3 and 2)", "transforms/instances.py", "instances_from_map", ("_segment",)),
    ("solidity of both (the cluster-count rule)", "transforms/pseudolabel.py", "mean_solidity", None),
    ("two-cluster mask split at the three-cluster nuclei", "transforms/pseudolabel.py", "split_at_markers", None),
)


def pseudo_label_stages(files: list[Path]) -> dict[str, float]:
    """Seconds per tile of each stage of :data:`PSEUDO_LABEL_STAGES`, profiled on one thread (the two cluster counts
    then run one after the other, so the stages add up to the single-thread time); the first tile warms up."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        op, rgbs = PseudoLabel(seed=0), [load_rgb(f).transpose(2, 0, 1) for f in files]
        op(rgbs[0])
        prof = cProfile.Profile()
        start = time.perf_counter()
        prof.enable()
        for rgb in rgbs[1:]:
            op(rgb)
        prof.disable()
        total = (time.perf_counter() - start) / (len(rgbs) - 1)
    finally:
        torch.set_num_threads(before)
    stats = pstats.Stats(prof).stats
    out: dict[str, float] = {}
    for stage, file, func, callers in PSEUDO_LABEL_STAGES:
        from_caller = None if callers is None else lambda key, names=callers: key[2] in names
        out[stage] = _cumulative(stats, file, func, from_caller) / (len(rgbs) - 1)
    out["other (blank-tile check, conversions)"] = max(total - sum(out.values()), 0.0)
    out["total on one thread, under the profiler"] = total
    return {k: round(v, 4) for k, v in out.items()}


def time_function(fn: Callable[[np.ndarray], object], files: list[Path]) -> float:
    rgbs = [load_rgb(f) for f in files]
    times = []
    for rgb in rgbs:
        fn(rgb)
        times.append(time.perf_counter())
    return _marginal(times)


def run(
    images: str,
    out: str = "bench/results/speed",
    tiles: int = 20,
    rounds: int = 3,
    threads: int = 2,
    profile: bool = True,
    rows: str | tuple = "",
) -> dict:
    """Time every row on the first ``tiles`` (+1 warm-up) images of ``images``; write ``speed.{json,md}``."""
    torch.set_num_threads(threads)
    files = _tiles(images, tiles)
    with tempfile.TemporaryDirectory(prefix="speed-tiles-") as tmp:
        folder = Path(tmp)
        for f in files:
            shutil.copy(f, folder / f.name)
        pseudo = PseudoLabel(seed=0)
        jobs: dict[str, Callable[[], float]] = {
            "ssimnet_network": lambda: time_network("ssimnet", files, False, threads),
            "ssimnet_network_bf16": lambda: time_network("ssimnet", files, True, threads),
            "dcgn_network": lambda: time_network("dcgn", files, False, threads),
            "dcgn_network_bf16": lambda: time_network("dcgn", files, True, threads),
            **(
                {
                    "ssimnet_network_onnxruntime": lambda: time_network("ssimnet", files, False, threads, True),
                    "dcgn_network_onnxruntime": lambda: time_network("dcgn", files, False, threads, True),
                    "ssimnet_network_bundle_windows": lambda: time_network(
                        "ssimnet", files, False, threads, True, overlap=None
                    ),
                    "dcgn_network_bundle_windows": lambda: time_network(
                        "dcgn", files, False, threads, True, overlap=None
                    ),
                }
                if onnxruntime_available()
                else {}
            ),
            "pseudo_labels": lambda: time_function(lambda rgb: pseudo(rgb.transpose(2, 0, 1)), files),
            "otsu_ws": lambda: time_function(otsu_haematoxylin_watershed, files),
        }
        for name, bundle, overrides, _ in BUNDLE_ROWS:
            jobs[name] = lambda b=bundle, o=overrides: time_bundle(b, folder, o, threads)["seconds_per_tile"]
        # fire turns "a,b" on the command line into a tuple
        wanted = [r for r in (rows.split(",") if isinstance(rows, str) else rows) if r] or list(jobs)
        unknown = sorted(set(wanted) - set(jobs))
        if unknown:
            raise SystemExit(f"unknown rows {unknown}; known: {', '.join(jobs)}")
        samples: dict[str, list[float]] = {name: [] for name in wanted}
        for r in range(rounds):
            for name in wanted:
                samples[name].append(jobs[name]())
                print(f"round {r + 1}/{rounds} {name}: {samples[name][-1]:.3f} s/tile", file=sys.stderr, flush=True)
        profiles = {}
        if profile:
            for name, bundle, overrides, _ in BUNDLE_ROWS:
                if (
                    name.endswith(("_foreground", "_fp32", "_bf16", "_four_flips", "_torch", "_overlap25"))
                    and name != "ssimnet_finetune_four_flips"
                ):
                    continue
                if name not in wanted:
                    continue
                profiles[name] = time_bundle(bundle, folder, overrides, threads, profile=True)["stages"]
    result = {
        "seconds_per_tile": {k: float(np.median(v)) for k, v in samples.items()},
        "samples": samples,
        "profiles": profiles,
        "pseudo_label_stages": pseudo_label_stages(files) if profile and "pseudo_labels" in wanted else {},
        "tiles": [f.name for f in files],
        "image_size": list(load_rgb(files[0]).shape[:2]),
        "threads": threads,
        "rounds": rounds,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "date": date.today().isoformat(),
    }
    save_report(out, "speed", result, markdown(result))
    return result


DESCRIPTIONS = {
    "ssimnet_network": "SSimNet U-Net alone, MONAI sliding window 256², overlap 0.25, float32",
    "ssimnet_network_bf16": "SSimNet U-Net alone, the same under bfloat16 autocast",
    "dcgn_network": "DCGN network alone, MONAI sliding window 512², overlap 0.25, float32",
    "dcgn_network_bf16": "DCGN network alone, the same under bfloat16 autocast",
    "ssimnet_network_onnxruntime": "SSimNet U-Net alone, the same on ONNX Runtime (float32)",
    "dcgn_network_onnxruntime": "DCGN network alone, the same on ONNX Runtime (float32)",
    "ssimnet_network_bundle_windows": "SSimNet U-Net alone on ONNX Runtime, with the bundle's own windows (256², 8 px "
    "overlap since 0.5.1)",
    "dcgn_network_bundle_windows": "DCGN network alone on ONNX Runtime, with the bundle's own windows (512², 16 px "
    "overlap since 0.4.3)",
    "pseudo_labels": "pseudo labels (`PseudoLabel`: stains → FCM → contour → watershed)",
    "otsu_ws": "Otsu on haematoxylin + watershed",
    **{name: text for name, _, _, text in BUNDLE_ROWS},
}


def markdown(result: dict) -> str:
    sec = result["seconds_per_tile"]
    ref = {"ssimnet": sec.get("ssimnet_network"), "dcgn": sec.get("dcgn_network")}
    h, w = result["image_size"]
    lines = [
        f"Marginal seconds per {h}×{w} tile (start-up, model loading and the first tile excluded), median of "
        f"{result['rounds']} rounds over {len(result['tiles']) - 1} tiles, {result['threads']} threads, "
        f"{result['cpu_count']} CPU cores, torch {result['torch']}, {result['date']} "
        "(`python -m bench.speed --images IMAGES`):",
        "",
        "| pipeline | s / tile | vs its network alone (float32) |",
        "|---|---|---|",
    ]
    for name, value in sec.items():
        family = "dcgn" if name.startswith("dcgn") else "ssimnet" if name.startswith("ssimnet") else None
        ratio = f"{value / ref[family]:.2f}×" if family and ref.get(family) else ""
        bold = "**" if name in ("ssimnet", "dcgn") else ""
        lines.append(f"| {DESCRIPTIONS.get(name, name)} | {bold}{value:.3f}{bold} | {bold}{ratio}{bold} |")
    if result.get("profiles"):
        lines += [
            "",
            "Where the seconds go (one profiled run per row, post-processing in the foreground so that the stages add "
            "up; seconds per tile after the warm-up tile, under the profiler):",
            "",
        ]
        stages = list(dict.fromkeys(s for p in result["profiles"].values() for s in p))
        lines.append("| stage | " + " | ".join(result["profiles"]) + " |")
        lines.append("|---|" + "---|" * len(result["profiles"]))
        for stage in stages:
            cells = [f"{p[stage]:.3f}" if stage in p else "–" for p in result["profiles"].values()]
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
        totals = [f"{sum(p.values()):.3f}" for p in result["profiles"].values()]
        lines.append("| total | " + " | ".join(totals) + " |")
    if result.get("pseudo_label_stages"):
        lines += [
            "",
            "Where the pseudo labels' seconds go (one profiled pass on one thread, so that the two cluster counts run "
            "one after the other and the stages add up; the timed row runs them side by side on two):",
            "",
            "| stage | s / tile |",
            "|---|---|",
        ]
        lines += [f"| {stage} | {sec:.3f} |" for stage, sec in result["pseudo_label_stages"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
