"""Whole slides → QuPath GeoJSON with a bundle's own network and post-processing: flat memory, resumable, cohorts.

One slide (:func:`segment_slide`):

1. open it (OpenSlide or tifffile through MONAI's WSIReader backends), read its microns per pixel (or ``mpp``);
2. read a thumbnail (≈ 2 µm per pixel, at most 2048 px) chunk by chunk and find the tissue on it;
3. pick the pyramid level closest to the model's resolution (never coarser), tile it with overlap, keep the tiles
   whose core touches tissue;
4. per tile: read, resample to the model's microns per pixel, run the bundle (its ``inference.json`` preprocessing,
   inferer and post-processing, without the file writer), keep the nuclei whose centroid lies in the tile's core,
   measure them and stream them out (GeoJSON detection per nucleus, a CSV row, pixels on the overlay);
5. every few tiles, checkpoint: the streams are flushed and their offsets written to ``<stem>.slide-state.json``; a
   killed run restarted with the same settings truncates the streams to the last checkpoint and goes on from there;
6. at the end the outputs appear under their final names (renames), the summary ``<stem>.json`` last.

A cohort (:func:`run_slides`) is a folder, a file or a list of slides shared across processes started by ``torchrun``
(rank ``r`` of ``n`` takes every n-th slide); finished slides are skipped and a failing slide is one line on stderr and
one row of ``failures.csv`` while the others go on.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelfree.core.geojson import AppendStream, CsvStream, FeatureStream, detection_feature
from labelfree.core.imageio import atomic_path, save_text, write_png
from labelfree.core.parallel import set_cpu_threads
from labelfree.transforms.scale import resample_rgb
from labelfree.transforms.slide_tiles import TileSpec, aligned_tiling, tile_grid, tile_nuclei
from labelfree.transforms.slide_tissue import slide_tissue_mask
from labelfree.transforms.wsi_reader import OPENSLIDE_SUFFIXES, TIFF_SUFFIXES, SlideError, open_slide, slide_thumbnail

__all__ = [
    "BundleTileSegmenter",
    "SlideSettings",
    "segment_slide",
    "run_slides",
    "list_slides",
    "slide_stem",
    "slide_outputs",
    "use_bundle_scripts",
    "bundle_parser",
    "bundle_window",
]

SLIDE_SUFFIXES = tuple(sorted(set(OPENSLIDE_SUFFIXES) | set(TIFF_SUFFIXES)))
#: per-nucleus table columns (µm and level-0 pixels)
TABLE_COLUMNS = ["id", "x", "y", "centroid_x_um", "centroid_y_um", "area_um2", "haematoxylin", "eccentricity"]
#: what the slide path sets in a bundle's inference config: a slide states its resolution and its tiles are resampled
#: to the model's, so no tile is re-scaled by its nuclei's size (SSimNet's ``auto_scale``) and neighbouring tiles
#: are segmented alike
TILE_OVERRIDES = {"auto_scale": False}
#: version of the resume state; a state of another version is ignored (the slide starts again)
STATE_VERSION = 1


class BundleTileSegmenter:
    """A bundle's tile pipeline as a function: ``(H, W, 3)`` uint8 RGB → ``(H, W)`` int32 instance map.

    It parses the bundle's ``configs/inference.json`` (so the slide path runs exactly the tile path's network,
    inferer and post-processing, flips and bfloat16 included) and leaves out its file reader and writer, as MONAI
    Label's bundle tasks do.

    Args:
        bundle_root: the bundle folder.
        device: where the network runs (default: the config's own, CUDA when present).
        overrides: config values to set (``{"flips": [[]]}``, for example).
        config_file: the inference config, relative to ``configs/``.
    """

    def __init__(
        self,
        bundle_root: str | os.PathLike,
        device: str | torch.device | None = None,
        overrides: dict[str, Any] | None = None,
        config_file: str = "inference.json",
    ) -> None:
        from labelfree.transforms.io import LoadRGBd, SaveSegmentationd

        settings: dict[str, Any] = {"postprocessing_threads": 0}
        if device is not None:
            settings["device"] = f"$torch.device('{torch.device(device)}')"
        parser = bundle_parser(bundle_root, {**settings, **(overrides or {})}, config_file)
        self.device = torch.device(parser.get_parsed_content("device"))
        self.network = parser.get_parsed_content("network")
        ckpt = torch.load(parser.get_parsed_content("ckpt_path"), map_location=self.device, weights_only=True)
        self.network.load_state_dict(ckpt["model"] if "model" in ckpt else ckpt, strict=True)
        self.network.eval()
        self.inferer = parser.get_parsed_content("inferer")
        pre = parser.get_parsed_content("preprocessing")
        post = parser.get_parsed_content("postprocessing")
        self.pre = [t for t in pre.transforms if not isinstance(t, LoadRGBd)]
        self.post = [t for t in post.transforms if not isinstance(t, SaveSegmentationd)]
        self.amp = bool(parser.get_parsed_content("amp")) and self.device.type == "cuda"
        self.window = bundle_window(parser)
        self.seconds = {"network": 0.0, "postprocessing": 0.0}
        self.stain_normaliser = _recolour_of(self.inferer)

    def set_stain_source(self, source: dict[str, Any] | None) -> None:
        """Read every tile from now on with these stains (``{"stains", "max_concentrations"}``, a whole slide's, from
        :func:`labelfree.transforms.stain_normalise.fit_stain_reference`) instead of its own; ``None``: its own.
        Only for a bundle whose inference re-colours a pass (SSimNet's stain view); otherwise nothing to set."""
        if self.stain_normaliser is None:
            return
        self.stain_normaliser.source_stains = None if source is None else source["stains"]
        self.stain_normaliser.source_max_concentrations = None if source is None else source["max_concentrations"]

    def __call__(self, rgb: np.ndarray, name: str = "tile") -> np.ndarray:
        """Segment one tile.

        Args:
            rgb: ``(H, W, 3)`` uint8.
            name: the tile's name in error messages.

        Returns:
            ``(H, W)`` int32 instance map, 0 = background.
        """
        return self.postprocess(self.network_pass(rgb, name))

    def network_pass(self, rgb: np.ndarray, name: str = "tile") -> dict[str, Any]:
        """Preprocessing and the network: the data item :meth:`postprocess` finishes (``"pred"`` on the CPU)."""
        from labelfree.transforms.io import rgb_metatensor

        d: dict[str, Any] = {"image": rgb_metatensor(np.ascontiguousarray(rgb), name)}
        for t in self.pre:
            d = t(d)
        t0 = time.perf_counter()
        image = torch.as_tensor(d["image"])[None].to(self.device)
        with torch.no_grad(), torch.autocast("cuda", enabled=self.amp):
            pred = self.inferer(image, self.network)
        d["pred"] = pred[0].float().cpu()
        self.seconds["network"] += time.perf_counter() - t0
        return d

    def postprocess(self, d: dict[str, Any]) -> np.ndarray:
        """The bundle's post-processing of :meth:`network_pass`'s item. Returns the ``(H, W)`` int32 instance map."""
        t0 = time.perf_counter()
        for t in self.post:
            d = t(d)
        inst = np.asarray(torch.as_tensor(d["inst"]).cpu()).reshape(d["inst"].shape[-2:]).astype(np.int32)
        self.seconds["postprocessing"] += time.perf_counter() - t0
        return inst


def _recolour_of(inferer: Any, depth: int = 6) -> Any:
    """The stain normaliser a bundle's inferer applies to one of its passes (an inferer with ``recolour`` and a
    re-coloured pass, e.g. :class:`labelfree.engines.inferers.FlipEnsembleInferer`, possibly wrapped by others through
    their ``inferer``), if it can read a slide's stains (``source_stains``); else ``None``."""
    for _ in range(depth):
        if inferer is None:
            return None
        recolour = getattr(inferer, "recolour", None)
        if recolour is not None and any(getattr(inferer, "recoloured", ())):
            return recolour if hasattr(recolour, "source_stains") else None
        inferer = getattr(inferer, "inferer", None)
    return None


def bundle_parser(
    bundle_root: str | os.PathLike, overrides: dict[str, Any] | None = None, config_file: str = "inference.json"
):
    """A bundle's config (``configs/<config_file>``) as a MONAI ``ConfigParser``, with ``bundle_root`` and
    ``overrides`` set and the bundle's ``scripts`` package importable (:func:`use_bundle_scripts`)."""
    from monai.bundle import ConfigParser

    root = Path(bundle_root).resolve()
    use_bundle_scripts(root)
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / config_file))
    parser["bundle_root"] = str(root)
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser


def use_bundle_scripts(root: str | os.PathLike) -> None:
    """Make ``scripts`` the package of the bundle at ``root``: its configs name ``scripts.*`` relative to the bundle, as
    in the model zoo, and both bundles have one, so a process switching bundles drops the other's from the module
    cache first."""
    root = str(Path(root).resolve())
    loaded = sys.modules.get("scripts")
    if loaded is not None and not str(getattr(loaded, "__file__", "") or "").startswith(root + os.sep):
        for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[name]
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)


def bundle_window(parser) -> tuple[int, int] | None:
    """``(roi, step)`` of the bundle's sliding window, when it has one (square roi)."""
    if "sliding_window_inferer" not in parser:
        return None
    sw = parser.get_parsed_content("sliding_window_inferer")
    roi = int(np.atleast_1d(sw.roi_size)[0])
    return roi, max(1, int(roi * (1.0 - float(sw.overlap))))


@dataclass
class SlideSettings:
    """How a slide is tiled and what is written.

    Attributes:
        model_mpp: microns per pixel the model was trained at (MoNuSeg at 40×: 0.25).
        mpp: microns per level-0 pixel of the slide, overriding the file's (required when the file has none).
        tile: tile side at the model's resolution, context included (adjusted to the bundle's sliding-window grid:
            :func:`labelfree.transforms.slide_tiles.aligned_tiling`).
        margin: context on each side, at the model's resolution (nuclei reaching further beyond a tile's core may be
            cut); 128 px is 32 µm at 0.25 µm/px.
        mpp_tolerance: relative difference of resolution accepted without resampling.
        thumbnail_mpp: resolution of the thumbnail the tissue is found on (also the overlay's).
        table: write the per-nucleus CSV.
        overlay: write the low-resolution overlay PNG.
        checkpoint_every: tiles between resume checkpoints.
        label: classification name of the detections.
        color: their display colour.
        tolerance: polygon simplification, pixels at the model's resolution (0: exact pixel outlines).
        backend: force ``"cucim"``, ``"openslide"`` or ``"tifffile"``.
        postprocessing_thread: post-process and write each tile in a worker thread while the network runs on the
            next (same outputs, same order); ``None``: when the network runs on a GPU. On 2 CPU cores it bought
            nothing (a 3k² slide: 19.1 / 18.7 s serial, 22.3 / 17.6 s threaded): the network already uses both.
    """

    model_mpp: float = 0.25
    mpp: float | None = None
    tile: int = 1600
    margin: int = 128
    mpp_tolerance: float = 0.05
    thumbnail_mpp: float = 2.0
    table: bool = True
    overlay: bool = True
    checkpoint_every: int = 4
    label: str = "Nucleus"
    color: tuple[int, int, int] = (0, 200, 0)
    tolerance: float = 0.0
    backend: str | None = None
    postprocessing_thread: bool | None = None


def slide_stem(path: str | os.PathLike) -> str:
    """``CMU-1.svs`` → ``CMU-1``; ``a.ome.tif`` → ``a``."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def slide_outputs(output_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """The files one slide produces; ``summary`` is renamed into place last and marks the slide as finished."""
    out = Path(output_dir)
    return {
        "geojson": out / f"{stem}.geojson",
        "table": out / f"{stem}_nuclei.csv",
        "overlay": out / f"{stem}_overlay.png",
        "state": out / f"{stem}.slide-state.json",
        "canvas": out / f".{stem}.overlay-mask.npy",
        "summary": out / f"{stem}.json",
    }


def _choose_level(slide, model_mpp: float, tol: float) -> tuple[int, float]:
    """The coarsest level not coarser than the model's resolution (else the finest), as ``(level, f)`` with
    ``f = model_mpp / level_mpp``, the level pixels per model pixel (1 within ``tol``: no resampling)."""
    mpps = [slide.level_mpp(lv) for lv in range(len(slide.sizes))]
    fine = [lv for lv, m in enumerate(mpps) if m <= model_mpp * (1 + tol)]
    level = max(fine, key=lambda lv: mpps[lv]) if fine else int(np.argmin(mpps))
    f = model_mpp / mpps[level]
    return level, 1.0 if abs(f - 1.0) <= tol else f


def _params_key(path: Path, settings: SlideSettings, bundle: str) -> str:
    st = path.stat()
    blob = json.dumps([str(path.resolve()), st.st_size, int(st.st_mtime), asdict(settings), bundle], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def segment_slide(
    path: str | os.PathLike,
    output_dir: str | os.PathLike,
    segmenter: Callable[[np.ndarray, str], np.ndarray],
    settings: SlideSettings | None = None,
    bundle_name: str = "",
    progress: bool | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Segment the nuclei of one slide into ``<stem>.geojson`` (+ ``_nuclei.csv``, ``_overlay.png``, ``<stem>.json``).

    Args:
        path: the slide.
        output_dir: where the outputs go.
        segmenter: tile → instance map (:class:`BundleTileSegmenter`).
        settings: tiling and outputs (:class:`SlideSettings`).
        bundle_name: recorded in the outputs and in the resume key.
        progress: show a progress bar (``None``: when stderr is a terminal).
        stop_after: stop (as if killed) after this many tiles *of this call*; for tests of resuming.

    Returns:
        the summary (also written to ``<stem>.json``): nuclei, tiles, tissue megapixels, seconds per stage.

    Raises:
        SlideError: unreadable slide, or no microns per pixel and no ``settings.mpp``.
    """
    from tqdm import tqdm

    settings = settings or SlideSettings()
    path = Path(path)
    stem = slide_stem(path)
    outs = slide_outputs(output_dir, stem)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    seconds = {"read": 0.0, "network": 0.0, "postprocessing": 0.0, "writing": 0.0}
    net_before = dict(getattr(segmenter, "seconds", {}))
    start = time.perf_counter()
    with open_slide(path, backend=settings.backend, mpp=settings.mpp) as slide:
        if slide.mpp is None:
            raise SlideError(f"{path.name}: the file states no microns per pixel; pass --mpp (e.g. 0.25 for 40x)")
        level, f = _choose_level(slide, settings.model_mpp, settings.mpp_tolerance)
        down = slide.downsamples[level]
        t0 = time.perf_counter()
        thumb, thumb_scale = slide_thumbnail(slide, mpp=settings.thumbnail_mpp)
        tissue = slide_tissue_mask(thumb)
        tile_m, margin_m = settings.tile, settings.margin
        window = getattr(segmenter, "window", None)
        if window is not None:
            tile_m, margin_m = aligned_tiling(tile_m, margin_m, *window)
        tile_l, margin_l = int(round(tile_m * f)), int(round(margin_m * f))
        lw, lh = slide.sizes[level]
        tiles = tile_grid(lw, lh, tile_l, margin_l, tissue, thumb_scale / down)
        if hasattr(segmenter, "set_stain_source"):
            # one stain estimate for the whole slide, so that neighbouring tiles are re-coloured alike
            segmenter.set_stain_source(
                _slide_stains(slide, level, tiles, f) if getattr(segmenter, "stain_normaliser", None) else None
            )
        seconds["read"] += time.perf_counter() - t0
        key = _params_key(path, settings, bundle_name)
        state = _load_state(outs["state"], key)
        if state and not (
            AppendStream.resumable(outs["geojson"], state["geojson"])
            and (not settings.table or AppendStream.resumable(outs["table"], state["table"]))
        ):
            state = None  # the part files were removed or cut short: start the slide again
        done = int(state["tiles_done"]) if state else 0
        nuclei = int(state["nuclei"]) if state else 0
        failed_tiles = list(state["failed_tiles"]) if state else []
        if state:
            seconds = dict(state["seconds"])
        geo = FeatureStream(outs["geojson"], resume=state["geojson"] if state else None)
        table = (
            CsvStream(outs["table"], TABLE_COLUMNS, resume=state["table"] if state else None)
            if settings.table
            else None
        )
        canvas = np.zeros(thumb.shape[:2], dtype=bool)
        if state and settings.overlay and outs["canvas"].is_file():
            canvas = np.load(outs["canvas"])
        mpp0 = slide.mpp
        # a live bar on a terminal (tiles done / total, nuclei so far, ETA); progress=False or a log file: none
        bar = tqdm(
            total=len(tiles),
            initial=done,
            unit="tile",
            desc=stem,
            file=sys.stderr,
            disable=None if progress is None else not progress,
        )
        ran = 0
        prog = {"done": done, "nuclei": nuclei, "net_before": net_before}
        split = hasattr(segmenter, "postprocess") and (
            settings.postprocessing_thread
            if settings.postprocessing_thread is not None
            else getattr(getattr(segmenter, "device", None), "type", "cpu") == "cuda"
        )

        def finish(spec: TileSpec, rgb: np.ndarray, out: Any) -> None:
            """Post-processing (when split off the network) and writing of one tile, in tile order."""
            inst = segmenter.postprocess(out) if split else out
            t0 = time.perf_counter()
            scale = (spec.w / rgb.shape[1], spec.h / rgb.shape[0])
            nuc = tile_nuclei(inst, rgb, spec, scale, down, mpp0, settings.tolerance)
            for k in range(len(nuc.ids)):
                cx, cy = nuc.centroid[k]
                meas = {
                    "Area µm^2": nuc.area_um2[k],
                    "Centroid X µm": cx * mpp0[0],
                    "Centroid Y µm": cy * mpp0[1],
                    "Hematoxylin OD mean": nuc.haematoxylin[k],
                    "Eccentricity": nuc.eccentricity[k],
                }
                fid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{stem}/{cx:.2f}/{cy:.2f}"))
                geo.add(detection_feature(nuc.polygons[k], settings.label, settings.color, meas, fid))
                if table is not None:
                    row = dict(id=fid, x=round(float(cx), 2), y=round(float(cy), 2), area_um2=float(nuc.area_um2[k]))
                    row.update(centroid_x_um=float(cx * mpp0[0]), centroid_y_um=float(cy * mpp0[1]))
                    row.update(haematoxylin=float(nuc.haematoxylin[k]), eccentricity=float(nuc.eccentricity[k]))
                    table.add(row)
            prog["nuclei"] += len(nuc.ids)
            if settings.overlay and len(nuc.ids):
                _paint(canvas, inst, nuc.ids, spec, scale, down / thumb_scale)
            seconds["writing"] += time.perf_counter() - t0
            advance()

        def advance() -> None:
            prog["done"] += 1
            bar.update(1)
            bar.set_postfix(nuclei=prog["nuclei"], refresh=False)
            if bar.disable and progress is None and prog["done"] % max(1, len(tiles) // 10) == 0:
                # in a log file (no terminal): a line every tenth of the slide instead of a live bar
                print(
                    f"{stem}: {prog['done']}/{len(tiles)} tiles, {prog['nuclei']} nuclei", file=sys.stderr, flush=True
                )
            if prog["done"] % max(1, settings.checkpoint_every) == 0:
                _add_segmenter_seconds(seconds, segmenter, prog["net_before"])
                prog["net_before"] = dict(getattr(segmenter, "seconds", {}))
                _save_state(
                    outs, key, prog["done"], prog["nuclei"], failed_tiles, seconds, geo, table, canvas, settings.overlay
                )

        # post-processing and writing of tile k run in one worker thread (in order) while the network runs on
        # tile k + 1: the watershed, EDT, zlib and the network release the GIL
        pool = ThreadPoolExecutor(max_workers=1) if split else None
        pending: deque = deque()
        try:
            for spec in tiles[done:]:
                if stop_after is not None and ran >= stop_after:
                    raise KeyboardInterrupt(f"stopped after {ran} tiles")
                ran += 1
                t0 = time.perf_counter()
                try:
                    rgb = slide.read(level, spec.x, spec.y, spec.w, spec.h)
                except Exception as exc:  # noqa: BLE001 - a corrupt tile: reported, the slide goes on
                    reason = str(exc).splitlines()[0] if str(exc) else ""
                    failed_tiles.append([spec.index, f"{type(exc).__name__}: {reason}"])
                    print(
                        f"{path.name}: tile at ({spec.x}, {spec.y}) level {level} unreadable, skipped", file=sys.stderr
                    )
                    if pool is None:
                        advance()
                    else:
                        pending.append(pool.submit(advance))  # in order, behind the tiles before it
                    continue
                mw, mh = max(1, int(round(spec.w / f))), max(1, int(round(spec.h / f)))
                rgb = resample_rgb(rgb, (mw, mh))
                seconds["read"] += time.perf_counter() - t0
                name = f"{path.name}@{spec.x},{spec.y}"
                if pool is None:
                    finish(spec, rgb, segmenter(rgb, name))
                    continue
                pending.append(pool.submit(finish, spec, rgb, segmenter.network_pass(rgb, name)))
                while len(pending) > 1:  # at most one tile waits behind the one being post-processed
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
        except BaseException:
            # killed or failed: stop the worker after its current tile, leave the part files for a resume (the
            # state file names the last checkpoint; anything appended after it is cut off then)
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            geo.abandon()
            if table is not None:
                table.abandon()
            bar.close()
            raise
        if pool is not None:
            pool.shutdown(wait=True)
        nuclei, net_before = prog["nuclei"], prog["net_before"]
        bar.close()
        _add_segmenter_seconds(seconds, segmenter, net_before)
        t0 = time.perf_counter()
        geo.close()
        if table is not None:
            table.close()
        if settings.overlay:
            over = thumb.copy()
            over[canvas] = (0.35 * over[canvas] + 0.65 * np.array([0, 220, 0])).astype(np.uint8)
            with atomic_path(outs["overlay"]) as tmp:
                write_png(tmp, over)
        seconds["writing"] += time.perf_counter() - t0
        tissue_mp = (
            sum((min(t.core[2], lw) - t.core[0]) * (min(t.core[3], lh) - t.core[1]) for t in tiles)
            * (down / f) ** 2
            / 1e6
        )  # megapixels at the model's resolution
        total = time.perf_counter() - start
        summary = {
            "slide": str(path),
            "bundle": bundle_name,
            "backend": slide.backend,
            "level0_size": list(slide.sizes[0]),
            "level0_mpp": list(mpp0),
            "level": level,
            "resample": round(1.0 / f, 6),
            "model_mpp": settings.model_mpp,
            "tiles": len(tiles),
            "tissue_megapixels": round(tissue_mp, 3),
            "nuclei": nuclei,
            "failed_tiles": failed_tiles,
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "seconds_this_run": round(total, 3),
            "outputs": {k: str(v) for k, v in outs.items() if k in ("geojson", "table", "overlay") and v.is_file()},
        }
        save_text(outs["summary"], json.dumps(summary, indent=2) + "\n")
        outs["state"].unlink(missing_ok=True)
        outs["canvas"].unlink(missing_ok=True)
    return summary


#: tiles read to estimate a slide's stains (evenly spread over its tissue tiles)
STAIN_SAMPLE_TILES = 8


def _slide_stains(slide: Any, level: int, tiles: list, f: float) -> dict[str, Any] | None:
    """A slide's stains and concentration percentiles at the model's resolution: :func:`fit_stain_reference` of up to
    :data:`STAIN_SAMPLE_TILES` of its tissue tiles, evenly spread; ``None`` when none can be read or holds stain (each
    tile then uses its own)."""
    from labelfree.transforms.stain_normalise import fit_stain_reference

    picks = sorted({int(round(i)) for i in np.linspace(0, len(tiles) - 1, min(STAIN_SAMPLE_TILES, len(tiles)))})
    rgbs = []
    for i in picks if tiles else []:
        spec = tiles[i]
        try:
            rgb = slide.read(level, spec.x, spec.y, spec.w, spec.h)
        except Exception:  # noqa: BLE001 - an unreadable tile is reported when the slide reaches it
            continue
        rgbs.append(resample_rgb(rgb, (max(1, int(round(spec.w / f))), max(1, int(round(spec.h / f))))))
    try:
        return fit_stain_reference(rgbs)
    except ValueError:
        return None


def _add_segmenter_seconds(seconds: dict, segmenter: Any, before: dict) -> None:
    now = getattr(segmenter, "seconds", {})
    for k in ("network", "postprocessing"):
        seconds[k] = seconds.get(k, 0.0) + now.get(k, 0.0) - before.get(k, 0.0)


def _paint(canvas: np.ndarray, inst: np.ndarray, ids: np.ndarray, spec: TileSpec, scale, level_per_thumb: float):
    """Mark the kept nuclei's pixels on the low-resolution overlay mask."""
    keep = np.zeros(int(inst.max()) + 1, dtype=bool)
    keep[ids] = True
    rows, cols = np.nonzero(keep[inst])
    ty = ((spec.y + (rows + 0.5) * scale[1]) * level_per_thumb).astype(np.int64)
    tx = ((spec.x + (cols + 0.5) * scale[0]) * level_per_thumb).astype(np.int64)
    ok = (ty < canvas.shape[0]) & (tx < canvas.shape[1])
    canvas[ty[ok], tx[ok]] = True


def _load_state(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if state.get("version") != STATE_VERSION or state.get("key") != key:
        return None  # another slide file, other settings or another bundle: start again
    return state


def _save_state(outs, key, done, nuclei, failed_tiles, seconds, geo, table, canvas, overlay) -> None:
    if overlay:
        with atomic_path(outs["canvas"]) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, canvas)
    state = {
        "version": STATE_VERSION,
        "key": key,
        "tiles_done": done,
        "nuclei": nuclei,
        "failed_tiles": failed_tiles,
        "seconds": seconds,
        "geojson": geo.checkpoint(),
        "table": table.checkpoint() if table is not None else None,
    }
    save_text(outs["state"], json.dumps(state) + "\n")


def list_slides(source: str | os.PathLike | Sequence[str]) -> list[Path]:
    """Slides named by ``source``: a slide file, a folder (its slide files, sorted), a ``.txt`` list (one path per
    line), or a list of paths."""
    if isinstance(source, (list, tuple)):
        return [Path(p) for p in source]
    src = Path(source)
    if src.is_dir():
        return sorted(p for p in src.iterdir() if p.is_file() and p.name.lower().endswith(SLIDE_SUFFIXES))
    if src.suffix.lower() == ".txt":
        lines = [ln.strip() for ln in src.read_text().splitlines()]
        return [
            Path(ln) if Path(ln).is_absolute() else src.parent / ln for ln in lines if ln and not ln.startswith("#")
        ]
    if src.is_file():
        return [src]
    raise FileNotFoundError(f"{src}: no such slide, folder or list")


def _rank_world() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def run_slides(
    source: str | os.PathLike | Sequence[str],
    output_dir: str | os.PathLike,
    bundle_root: str | os.PathLike,
    settings: SlideSettings | None = None,
    device: str | torch.device | None = None,
    overrides: dict[str, Any] | None = None,
    num_threads: int | None = None,
    exit_on_failure: bool = True,
) -> dict[str, Any]:
    """Segment a cohort: every slide of ``source`` not yet finished in ``output_dir``, this process's share of them.

    Started by ``torchrun --nproc_per_node N``, rank ``r`` takes slides ``r, r + N, ...`` (on GPU ``cuda:LOCAL_RANK``
    when there are GPUs); the ranks meet at the end (gloo or NCCL) and rank 0 writes ``failures.csv``.

    Args:
        source: see :func:`list_slides`.
        output_dir: outputs of every slide (see :func:`slide_outputs`).
        bundle_root: the bundle whose network and post-processing segment the tiles.
        settings: tiling and outputs.
        device: default: ``cuda:LOCAL_RANK`` when CUDA is present, else the CPU.
        overrides: bundle config values (see :class:`BundleTileSegmenter`).
        num_threads: CPU threads for torch (default: torch's).
        exit_on_failure: raise ``SystemExit(1)`` when any slide failed.

    Returns:
        ``{"done": [...], "skipped": [...], "failed": [(slide, reason), ...]}`` for this rank.
    """
    from labelfree.engines.runs import check_output_dir, describe_failure, write_failures

    rank, world, local = _rank_world()
    check_output_dir(output_dir)
    slides = list_slides(source)
    if not slides:
        raise FileNotFoundError(f"{source}: no slide files ({', '.join(SLIDE_SUFFIXES)})")
    if num_threads:
        set_cpu_threads(int(num_threads))
    if device is None:
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    settings = settings or SlideSettings()
    mine = slides[rank::world]
    result: dict[str, Any] = {"done": [], "skipped": [], "failed": []}
    segmenter = None
    for slide in mine:
        stem = slide_stem(slide)
        if slide_outputs(output_dir, stem)["summary"].is_file():
            result["skipped"].append(str(slide))
            print(f"{slide.name}: already done, skipped", file=sys.stderr)
            continue
        try:
            if segmenter is None:
                segmenter = BundleTileSegmenter(
                    bundle_root, device=device, overrides={**TILE_OVERRIDES, **(overrides or {})}
                )
            summary = segment_slide(slide, output_dir, segmenter, settings, bundle_name=Path(bundle_root).name)
            result["done"].append(str(slide))
            sec = summary["seconds"]
            print(
                f"{slide.name}: {summary['nuclei']} nuclei in {summary['tissue_megapixels']:.1f} tissue megapixels "
                f"(read {sec['read']:.1f} s, network {sec['network']:.1f} s, post-processing "
                f"{sec['postprocessing']:.1f} s, writing {sec['writing']:.1f} s)",
                file=sys.stderr,
            )
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - one slide's failure must not stop the cohort
            reason = describe_failure(exc, str(slide))
            result["failed"].append((str(slide), reason))
            print(f"FAILED {slide}: {reason}", file=sys.stderr)
    failures = _gather_failures(result["failed"], output_dir, rank, world)
    if rank == 0:
        write_failures(output_dir, failures)
        n = len(slides) - len(failures)
        print(f"{n} of {len(slides)} slide(s) segmented into {Path(output_dir).resolve()}", file=sys.stderr)
        if failures:
            print(f"{len(failures)} slide(s) failed, listed in {Path(output_dir) / 'failures.csv'}", file=sys.stderr)
    if result["failed"] and exit_on_failure:
        raise SystemExit(1)
    return result


def _gather_failures(mine: list, output_dir, rank: int, world: int) -> list:
    """Every rank's failures, on rank 0 (the others get their own): through a barrier when several processes run."""
    if world <= 1:
        return list(mine)
    import torch.distributed as dist

    own = not dist.is_initialized()
    if own:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, list(mine))
    finally:
        if own:
            dist.destroy_process_group()
    return [f for part in gathered for f in part] if rank == 0 else list(mine)
