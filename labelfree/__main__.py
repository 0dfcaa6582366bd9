"""Command line: ``python -m labelfree <command>`` (or the ``labelfree`` console script).

Commands:
    pseudo_labels INPUT OUTPUT   label-free nuclei masks for an image file or a folder of tiles
    score PRED [--labels D]      Dice, AJI and PQ of written instance maps against labels (default: the sample's)
    slide SLIDES [--output D]    nuclei of whole slides (or a folder / list of them) as QuPath GeoJSON
    demo_slide [--output F]      a small synthetic pyramidal slide made of the embedded sample tiles
    sample_dir                   print where the embedded sample tiles are
    bundle_zip BUNDLE [--out D]  self-contained model-zoo zip of a bundle (``<name>_v<version>.zip``)
    stain_reference IMAGES       the typical stain of a folder of training tiles (SSimNet's ``stain_reference``)
    object_area_reference IMAGES the typical nucleus area a checkpoint finds on its training tiles (SSimNet's
                                 ``reference_object_area``)
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import fire
import numpy as np

from labelfree.core.imageio import InvalidImageError, load_rgb
from labelfree.sample import sample_dir as _sample_dir

log = logging.getLogger("labelfree")


def pseudo_labels(
    input: str | None = None,  # noqa: A002 - the CLI reads best as --input
    output: str = "out/pseudo_labels",
    stain_method: str = "vahadane",
    n_clusters: int | str = "auto",
    seed: int = 0,
    skip_existing: bool = False,
    debug: bool = False,
) -> None:
    """Run the label-free pseudo-label pipeline and write ``<stem>_inst.tif``, ``_seg.png`` and ``_overlay.png``.

    Args:
        input: an image file or a folder of png/tif/jpg tiles; default: the embedded MoNuSeg sample.
        output: output folder.
        stain_method: ``vahadane`` or ``macenko``.
        n_clusters: fuzzy c-means clusters: ``auto`` (default: 2 or 3 per tile, by the objects' solidity), 2 as in
            the SSimNet paper, or 3.
        seed: random seed.
        skip_existing: leave out tiles whose three outputs are already in ``output`` (resume an interrupted run).
        debug: print full tracebacks.

    Exits with status 1 if any input could not be processed; the others are still written, and the failed ones are
    listed in ``<output>/failures.csv``.
    """
    from tqdm import tqdm

    from labelfree.engines.runs import (
        check_output_dir,
        describe_failure,
        image_datalist,
        install_error_handling,
        report_run,
    )
    from labelfree.transforms.pseudolabel import PseudoLabel
    from labelfree.transforms.stain import NO_TISSUE_NOTE
    from labelfree.core.writer import write_segmentation

    install_error_handling(debug)
    default = _sample_dir() / "images"
    check_output_dir(output)
    items = image_datalist(default if input is None else input, output, skip_existing, default_dir=default)
    op = PseudoLabel(stain_method=stain_method, n_clusters=n_clusters, seed=seed)
    failed: list[tuple[str, str]] = []
    for item in tqdm(items, desc="pseudo labels", unit="tile", disable=None):
        path = Path(item["image"])
        try:
            rgb = load_rgb(path)
            t0 = time.perf_counter()
            res = op(rgb.transpose(2, 0, 1))
            write_segmentation(output, path.stem, rgb, res.instances)
            note = "" if res.has_tissue else f" ({NO_TISSUE_NOTE})"
            tqdm.write(f"{path.name}: {int(res.instances.max())} nuclei in {time.perf_counter() - t0:.2f} s{note}")
        except (InvalidImageError, OSError) as exc:
            reason = describe_failure(exc, str(path))
            failed.append((str(path), reason))
            tqdm.write(f"FAILED {path}: {reason}", file=sys.stderr)
    what = "masks (<stem>_inst.tif, <stem>_seg.png) and overlays (<stem>_overlay.png)"
    report_run(output, len(items) - len(failed), failed, what)
    return None


def score(pred: str = "out/demo", labels: str | None = None) -> None:
    """Score the ``<stem>_inst.tif`` maps in ``pred`` against the label maps in ``labels`` and print a table.

    Args:
        pred: an output folder of ``pseudo_labels`` or a bundle's inference.
        labels: folder of instance label maps named like the tiles; default: the embedded sample's labels.

    Labels are only read here, to measure: nothing the tools do depends on them.
    """
    import tifffile

    from labelfree.core.imageio import find_label, load_instance_map
    from labelfree.core.metrics import instance_scores

    label_dir = Path(labels) if labels is not None else _sample_dir() / "labels"
    maps = sorted(Path(pred).glob("*_inst.tif"))
    if not maps:
        raise SystemExit(f"error: no <stem>_inst.tif in {pred}")
    rows = []
    for path in maps:
        stem = path.name[: -len("_inst.tif")]
        try:
            gt = load_instance_map(find_label(label_dir, f"{stem}.png"))
        except FileNotFoundError:
            continue
        rows.append((stem, instance_scores(gt, tifffile.imread(path))))
    if not rows:
        raise SystemExit(f"error: none of the {len(maps)} instance maps in {pred} has a label map in {label_dir}")
    keys = ("dice", "aji", "pq")
    print(f"{'tile':<48}" + "".join(f"{k:>8}" for k in keys))
    for stem, sc in rows:
        print(f"{stem:<48}" + "".join(f"{sc[k]:>8.3f}" for k in keys))
    print(f"{'mean':<48}" + "".join(f"{sum(sc[k] for _, sc in rows) / len(rows):>8.3f}" for k in keys))


def slide(
    slides: str,
    output: str = "out/slides",
    model: str = "ssimnet",
    mpp: float | None = None,
    model_mpp: float = 0.25,
    tile: int = 1600,
    margin: int = 128,
    table: bool = True,
    overlay: bool = True,
    backend: str | None = None,
    device: str | None = None,
    threads: int = 2,
    debug: bool = False,
) -> None:
    """Segment the nuclei of whole slides into QuPath GeoJSON (``<output>/<stem>.geojson``, one detection per nucleus).

    Args:
        slides: a slide (SVS, NDPI, MRXS, OME-TIFF, pyramidal TIFF, ...), a folder of slides or a ``.txt`` list.
        output: output folder; also ``<stem>_nuclei.csv``, ``<stem>_overlay.png`` and ``<stem>.json`` (summary).
        model: ``ssimnet``, ``dcgn`` or the path of a bundle folder.
        mpp: microns per pixel of the slides at full resolution, for files that do not state it (or to override it).
        model_mpp: microns per pixel the model was trained at (MoNuSeg, 40x: 0.25); slides are resampled to it.
        tile: tile side at the model's resolution, context included.
        margin: context around each tile's core.
        table: write the per-nucleus CSV.
        overlay: write the low-resolution overlay PNG.
        backend: ``cucim``, ``openslide`` or ``tifffile`` (default: cuCIM where installed, else OpenSlide, when they
            read the file).
        device: ``cpu``, ``cuda``, ``cuda:1``; default: CUDA when present.
        threads: CPU threads.
        debug: full tracebacks.

    Killed runs continue where they stopped when started again with the same settings; finished slides are skipped.
    With ``torchrun --nproc_per_node N -m labelfree slide ...`` the slides are shared among N processes.
    Exits with status 1 when any slide failed (listed in ``<output>/failures.csv``); the others are still written.
    """
    from labelfree.bundle_paths import locate_bundle
    from labelfree.engines.runs import install_error_handling
    from labelfree.engines.slides import bundle_parser

    install_error_handling(debug)
    root = Path(model if Path(model).is_dir() else locate_bundle(model, model))
    values = dict(dataset_dir=slides, output_dir=output, mpp=mpp, model_mpp=model_mpp)
    values.update(tile_size=tile, tile_margin=margin, write_table=table, write_overlay=overlay, slide_backend=backend)
    values.update(num_threads=threads, debug=debug)
    if device is not None:
        values["device"] = f"$torch.device('{device}')"
    # the bundle's own inference_wsi.json, so the command line and `monai.bundle run` are one code path
    parser = bundle_parser(root, values, "inference_wsi.json")
    parser.get_parsed_content("initialize")
    parser.get_parsed_content("run")


def demo_slide(output: str = "out/demo_slide.ome.tif", layout: str = "ome", mpp: float = 0.25) -> str:
    """Write a small synthetic slide (the embedded sample tiles on glass, a pyramid, known microns per pixel).

    Args:
        output: the file (``.ome.tif``, or ``.tif`` with ``layout="generic"`` for OpenSlide).
        layout: ``ome`` or ``generic``.
        mpp: microns per pixel written into the file.
    """
    from labelfree.core.demo_slide import write_demo_slide
    from labelfree.core.imageio import list_images

    tiles = [load_rgb(p) for p in list_images(_sample_dir() / "images")]
    gap = 200
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) + 1)
    height = max(t.shape[0] for t in tiles) + 2 * gap
    places, x = [], gap
    for t in tiles:
        places.append((x, gap, t))
        x += t.shape[1] + gap
    return str(write_demo_slide(output, width, height, places, mpp=mpp, layout=layout))


def sample_dir() -> str:
    """Folder of the embedded sample (``images/``, ``labels/``, ``ATTRIBUTION.md``)."""
    return str(_sample_dir())


def bundle_zip(bundle: str, out: str = "dist") -> str:
    """Build ``<out>/<bundle>_v<version>.zip`` (bundle files plus the ``labelfree`` package) and print its path."""
    from labelfree.bundle_zip import build_bundle_zip

    return str(build_bundle_zip(bundle, out))


def _readable_tiles(images: str, desc: str) -> Iterator[np.ndarray]:
    """The tiles of a folder, read one at a time under a progress bar labelled ``desc``; a tile that cannot be read is
    reported in one line and skipped, so the others still count. The folder is listed at once: a missing or empty one
    stops the command with one line before any other work."""
    from tqdm import tqdm

    from labelfree.core.imageio import list_images

    try:
        paths = list_images(images)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None

    def tiles() -> Iterator[np.ndarray]:
        for path in tqdm(paths, desc=desc, unit="tile"):
            try:
                yield load_rgb(path)
            except InvalidImageError as err:
                log.warning("skipped %s: %s", path.name, err)

    return tiles()


def stain_reference(images: str, percentile: float = 99.0, seed: int = 0) -> str:
    """Print the stain reference of a folder of tiles as JSON: the median of their unit Vahadane stain vectors and of
    their ``percentile``-th concentrations. SSimNet's ``inference.json`` ``stain_reference`` is this command's output
    on the tiles its checkpoint was trained on; after training on other tiles, run it on those.

    Args:
        images: a folder of png/tif/jpg tiles.
        percentile: the concentration percentile (as ``labelfree.transforms.stain_normalise.normalise_stains``).
        seed: pixel subsampling seed of each tile's stain estimate.
    """
    import json

    from labelfree.transforms.stain_normalise import fit_stain_reference

    tiles = _readable_tiles(images, "stain reference")
    try:
        return json.dumps(fit_stain_reference(tiles, percentile=percentile, seed=seed))
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None


def object_area_reference(images: str, model: str = "ssimnet", ckpt_path: str | None = None) -> int:
    """Print the median, over a folder of tiles, of each tile's median object area (pixels) under the bundle's own
    inference at the tiles' own scale. SSimNet's ``inference.json`` ``reference_object_area`` is this command's output
    on the tiles its checkpoint was trained on (``auto_scale``, :mod:`labelfree.engines.rescale`); after training on
    other tiles, run it on those with ``--ckpt_path``.

    Args:
        images: a folder of png/tif/jpg tiles, all at the model's resolution.
        model: ``ssimnet`` or the path of a bundle folder.
        ckpt_path: the checkpoint (default: the bundle's shipped one).
    """
    from labelfree.bundle_paths import locate_bundle
    from labelfree.engines.rescale import reference_object_area
    from labelfree.engines.slides import BundleTileSegmenter

    tiles = _readable_tiles(images, "object areas")  # the folder is checked before the bundle loads
    root = Path(model if Path(model).is_dir() else locate_bundle(model, model))
    overrides: dict = {"auto_scale": False} | ({"ckpt_path": str(ckpt_path)} if ckpt_path else {})
    segment = BundleTileSegmenter(root, overrides=overrides)
    area = reference_object_area(segment, tiles)
    if area is None:
        raise SystemExit(f"error: no objects found on the tiles of {images}")
    return int(round(area))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    fire.Fire(
        {
            "pseudo_labels": pseudo_labels,
            "score": score,
            "slide": slide,
            "demo_slide": demo_slide,
            "sample_dir": sample_dir,
            "bundle_zip": bundle_zip,
            "stain_reference": stain_reference,
            "object_area_reference": object_area_reference,
        }
    )


if __name__ == "__main__":
    main()
