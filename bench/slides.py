"""Whole-slide benchmark: peak memory vs slide size, throughput per stage, stitched slide vs one-pass inference.

    python -m bench.slides --images ../shared/data/monuseg/train/images --cpm ../shared/data/cpm15/train/images \
        --out bench/results/slides

* memory: synthetic 5k², 20k² and 40k² OME-TIFF pyramids (0.25 µm/px, glass with five MoNuSeg tiles spread over the
  slide, so the tile grid, thumbnail and tissue search span the whole slide), each segmented by SSimNet in a fresh
  process; peak RSS from the process's own ``VmHWM``;
* throughput: a 5k² slide tiled with 25 MoNuSeg tiles (all tissue), both bundles, tissue megapixels per second and
  seconds in reading, network, post-processing and writing (2 CPU threads);
* stitching: every MoNuSeg and CPM-15 image (cropped to 256 + k × step px, one window grid for the whole image; the
  step of SSimNet's sliding window, 248 px since 0.5.1) as a slide cut into tiles of 448 px asked for (504 px once
  aligned to that grid: seams every 248 px through the tissue) vs the same pixels segmented as one image by SSimNet:
  nucleus counts and Dice of the re-rasterised GeoJSON.

Writes ``slides.json`` and ``slides.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.report_files import save_report
from labelfree.core.demo_slide import write_demo_slide
from labelfree.core.imageio import list_images, load_rgb

REPO = Path(__file__).resolve().parents[1]


def _one(slide: str, out: str, bundle: str, threads: int) -> None:
    """Child process: segment one slide, print its summary and peak RSS as JSON."""
    import torch

    from labelfree.engines.slides import BundleTileSegmenter, SlideSettings, segment_slide

    torch.set_num_threads(threads)
    seg = BundleTileSegmenter(REPO / "bundles" / bundle, device="cpu", overrides=wsi_overrides(bundle))
    t0 = time.perf_counter()
    summary = segment_slide(slide, out, seg, SlideSettings(), bundle_name=bundle, progress=False)
    summary["wall_s"] = time.perf_counter() - t0
    summary["peak_rss_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(summary))


def _peak_rss_mb() -> float:
    """This process's peak resident memory: ``VmHWM`` belongs to the process's own address space. (``ru_maxrss`` is
    not used: Linux carries it across ``exec``, so a child would report the benchmark parent's memory at fork time.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def wsi_overrides(bundle: str) -> dict:
    """The bundle config values its ``inference_wsi.json`` sets for slides (``bundle_overrides``)."""
    from labelfree.engines.slides import bundle_parser

    parser = bundle_parser(REPO / "bundles" / bundle, config_file="inference_wsi.json")
    return dict(parser.get_parsed_content("bundle_overrides"))


def _run_child(slide: Path, out: Path, bundle: str, threads: int) -> dict:
    cmd = [sys.executable, "-m", "bench.slides", "--one", str(slide), "--out", str(out), "--bundle", bundle,
           "--threads", str(threads)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def memory(tiles: list[np.ndarray], tmp: Path, threads: int, sizes=(5000, 20000, 40000)) -> list[dict]:
    rows = []
    for size in sizes:
        t = tiles[0].shape[0]
        spots = [(200, 200), (size - t - 200, 200), (200, size - t - 200), (size - t - 200, size - t - 200)]
        spots.append(((size - t) // 2, (size - t) // 2))
        places = [(x, y, tiles[i % len(tiles)]) for i, (x, y) in enumerate(spots)]
        levels = max(1, int(np.log2(size / 1000)) + 1)
        path = write_demo_slide(tmp / f"mem{size}.ome.tif", size, size, places, mpp=0.25, levels=levels)
        res = _run_child(path, tmp / f"mem{size}", "ssimnet", threads)
        rows.append({"side": size, "file_mb": round(path.stat().st_size / 2**20, 1), **_pick(res)})
        path.unlink()
        print(f"memory {size}²: peak RSS {res['peak_rss_mb']:.0f} MB, {res['nuclei']} nuclei", flush=True)
    return rows


def _pick(res: dict) -> dict:
    keys = ("peak_rss_mb", "wall_s", "tiles", "tissue_megapixels", "nuclei", "seconds")
    return {k: res[k] for k in keys}


def throughput(tiles: list[np.ndarray], tmp: Path, threads: int) -> list[dict]:
    t = 1000
    places = [(x * t, y * t, tiles[(y * 5 + x) % len(tiles)][:t, :t]) for y in range(5) for x in range(5)]
    path = write_demo_slide(tmp / "full5k.ome.tif", 5 * t, 5 * t, places, mpp=0.25, levels=3)
    rows = []
    for bundle in ("ssimnet", "dcgn"):
        res = _run_child(path, tmp / f"tp_{bundle}", bundle, threads)
        sec = res["seconds"]
        busy = sum(sec.values())
        rows.append({"bundle": bundle, **_pick(res), "mp_per_s": res["tissue_megapixels"] / busy})
        print(f"throughput {bundle}: {res['tissue_megapixels'] / busy:.3f} tissue MP/s {sec}", flush=True)
    return rows


def stitching(images: Path, tmp: Path, limit: int | None = None) -> list[dict]:
    """Each image, cropped to the largest side of the form roi + k·step that fits (the network's window grid: 256 +
    k·248 since SSimNet 0.5.1, 256 + k·192 before), as a slide cut into tiles of 448 px asked for (128 px context;
    aligned to the grid: 504 px, seams every 248 px) vs the same pixels segmented as one image."""
    from skimage.draw import polygon as draw_polygon

    from labelfree.engines.slides import BundleTileSegmenter, SlideSettings, segment_slide

    seg = BundleTileSegmenter(REPO / "bundles" / "ssimnet", device="cpu", overrides=wsi_overrides("ssimnet"))
    roi, step = seg.window
    rows = []
    for f in list_images(images)[:limit]:
        im = load_rgb(f)
        side = roi + (min(im.shape[:2]) - roi) // step * step
        im = np.ascontiguousarray(im[:side, :side])
        path = write_demo_slide(tmp / "st.ome.tif", side, side, [(0, 0, im)], mpp=0.25, levels=2)
        single = seg(im)
        out = tmp / f"st_{images.parent.name}_{f.stem}"
        settings = SlideSettings(tile=448, margin=128, table=False, overlay=False)
        summary = segment_slide(path, out, seg, settings, progress=False)
        feats = json.loads((out / "st.geojson").read_text())["features"]
        lab = np.zeros(single.shape, bool)
        for ft in feats:
            ring = np.asarray(ft["geometry"]["coordinates"][0])
            rr, cc = draw_polygon(ring[:, 1] - 0.5, ring[:, 0] - 0.5, lab.shape)
            lab[rr, cc] = True
        n_single = len(np.unique(single)) - 1
        dice = 2 * (lab & (single > 0)).sum() / max(1, lab.sum() + (single > 0).sum())
        rows.append(
            {
                "image": f.name,
                "side": side,
                "tiles": summary["tiles"],
                "nuclei_slide": len(feats),
                "nuclei_single": n_single,
                "dice": float(dice),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="../shared/data/monuseg/train/images")
    ap.add_argument("--cpm", default="../shared/data/cpm15/train/images")
    ap.add_argument("--out", default="bench/results/slides")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parts", default="stitching,throughput,memory")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--bundle", default="ssimnet", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        _one(args.one, args.out, args.bundle, args.threads)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tiles = [load_rgb(p) for p in list_images(args.images)]
    parts = args.parts.split(",")
    # parts not run this time keep their last results
    result: dict = json.loads((out / "slides.json").read_text()) if (out / "slides.json").is_file() else {}
    with tempfile.TemporaryDirectory(prefix="bench-slides-") as tmp:
        if "stitching" in parts:
            result["stitching"] = {"monuseg": stitching(Path(args.images), Path(tmp))}
            if args.cpm and Path(args.cpm).is_dir():
                result["stitching"]["cpm15"] = stitching(Path(args.cpm), Path(tmp))
            print("stitching done", flush=True)
        if "throughput" in parts:
            result["throughput"] = throughput(tiles, Path(tmp), args.threads)
        if "memory" in parts:
            result["memory"] = memory(tiles, Path(tmp), args.threads)
    save_report(out, "slides", result, report(result))


def report(result: dict) -> str:
    lines = ["# Whole slides (`python -m bench.slides`)", ""]
    if "stitching" in result:
        lines += [
            "## Stitched slide vs one pass (SSimNet; each image as a slide cut into tiles on the window grid)",
            "",
        ]
        lines += [
            "| set | images | nuclei one pass | nuclei stitched | worst count difference | mean Dice | min Dice |"
        ]
        lines += ["|---|---|---|---|---|---|---|"]
        for name, rows in result["stitching"].items():
            if not rows:
                continue
            worst = max(abs(r["nuclei_slide"] - r["nuclei_single"]) / max(1, r["nuclei_single"]) for r in rows)
            d = [r["dice"] for r in rows]
            lines.append(
                f"| {name} | {len(rows)} | {sum(r['nuclei_single'] for r in rows)} | "
                f"{sum(r['nuclei_slide'] for r in rows)} | {100 * worst:.2f} % | {np.mean(d):.4f} | {min(d):.4f} |"
            )
        lines.append("")
    if "throughput" in result:
        lines += ["## Throughput (5k² slide of 25 MoNuSeg tiles, 2 CPU threads)", ""]
        lines += [
            "| bundle | tissue MP | tiles | nuclei | MP / s | read s | network s | post-processing s | writing s |"
        ]
        lines += ["|---|---|---|---|---|---|---|---|---|"]
        for r in result["throughput"]:
            s = r["seconds"]
            lines.append(
                f"| {r['bundle']} | {r['tissue_megapixels']:.1f} | {r['tiles']} | {r['nuclei']} | {r['mp_per_s']:.3f} | "
                f"{s['read']:.1f} | {s['network']:.1f} | {s['postprocessing']:.1f} | {s['writing']:.1f} |"
            )
        lines.append("")
    if "memory" in result:
        lines += ["## Peak memory vs slide size (SSimNet, fresh process per slide)", ""]
        lines += ["| slide side | file MB | tiles | nuclei | peak RSS MB | wall s |", "|---|---|---|---|---|---|"]
        for r in result["memory"]:
            lines.append(
                f"| {r['side']} | {r['file_mb']} | {r['tiles']} | {r['nuclei']} | {r['peak_rss_mb']:.0f} | {r['wall_s']:.1f} |"
            )
        m = result["memory"]
        growth = 100 * (m[-1]["peak_rss_mb"] / m[0]["peak_rss_mb"] - 1)
        peaks = [r["peak_rss_mb"] for r in m]
        spread = 100 * (max(peaks) / min(peaks) - 1)
        lines += [
            "",
            f"Growth from the smallest to the largest slide: {growth:+.1f} %; spread over all sizes: {spread:.1f} %.",
        ]
        lines += [
            "(Differences of this size between slides also appear between runs of the same slide.)",
            "",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
