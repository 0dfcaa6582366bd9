"""Benchmark: the project's PNG encoder against PIL's, on the three PNGs an inference run writes per tile.

For each tile: its contour overlay (RGB), its mask (0/255) and its instance map as 16-bit grey, drawn from the
tile's label file (the labels only stand in for a prediction here: same kind of picture, nothing is scored). Each
array is encoded by PIL as the project did up to SSimNet 0.5.0 (zlib level 1; run-length strategy for RGB, default for
grey; PIL picks one of PNG's five row filters per row) and by :func:`labelfree.core.imageio.png_bytes` (one fixed
filter, "Up", and run-length zlib at level 1), each in turn, median of ``repeats``; both files are decoded again and
checked equal to the array.

    python -m bench.png_encoder --images ../shared/data/monuseg/train/images --labels ../shared/data/monuseg/train/labels \\
        --out bench/results/speed/png
"""

from __future__ import annotations

import io
import time
import zlib
from datetime import date

import fire
import numpy as np
from PIL import Image

from bench.report_files import save_report
from labelfree.core.imageio import find_label, list_images, load_instance_map, load_rgb, png_bytes
from labelfree.core.overlay import contour_overlay


def pil_bytes(array: np.ndarray) -> bytes:
    """The PNG writer of SSimNet 0.5.0 and before: PIL at zlib level 1, run-length strategy for RGB."""
    buffer = io.BytesIO()
    strategy = zlib.Z_RLE if array.ndim == 3 else zlib.Z_DEFAULT_STRATEGY
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1, compress_type=strategy)
    return buffer.getvalue()


def _time(encode, array: np.ndarray, repeats: int) -> tuple[float, bytes]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        data = encode(array)
        seconds.append(time.perf_counter() - start)
    with Image.open(io.BytesIO(data)) as im:
        if not np.array_equal(np.array(im), array):
            raise AssertionError("a PNG did not decode to its array")
    return float(np.median(seconds)), data


def run(images: str, labels: str, out: str = "bench/results/speed/png", tiles: int = 8, repeats: int = 5) -> dict:
    """Time both encoders on the first ``tiles`` tiles; write ``png.{json,md}`` under ``out``."""
    rows = []
    for path in list_images(images)[:tiles]:
        rgb = load_rgb(path)
        inst = load_instance_map(find_label(labels, path)).astype(np.uint16)
        arrays = {
            "overlay": contour_overlay(rgb, inst),
            "mask": (inst > 0).astype(np.uint8) * 255,
            "instances16": inst,
        }
        for kind, array in arrays.items():
            t_pil, b_pil = _time(pil_bytes, array, repeats)
            t_own, b_own = _time(png_bytes, array, repeats)
            rows.append(
                {
                    "tile": path.stem,
                    "kind": kind,
                    "pil_seconds": t_pil,
                    "own_seconds": t_own,
                    "pil_bytes": len(b_pil),
                    "own_bytes": len(b_own),
                }
            )
    result = {"rows": rows, "repeats": repeats, "date": date.today().isoformat()}
    save_report(out, "png", result, markdown(result))
    return result


def markdown(result: dict) -> str:
    rows = result["rows"]
    tiles = len({r["tile"] for r in rows})
    lines = [
        f"PNG encoding per array, mean over {tiles} tiles (median of {result['repeats']} encodings each; one core, "
        f"{result['date']}; `python -m bench.png_encoder`). Every file decodes to its array.",
        "",
        "| array | PIL (0.5.0) ms | ours ms | faster | PIL kB | ours kB | size |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in dict.fromkeys(r["kind"] for r in rows):
        sel = [r for r in rows if r["kind"] == kind]
        t_pil = np.mean([r["pil_seconds"] for r in sel]) * 1000
        t_own = np.mean([r["own_seconds"] for r in sel]) * 1000
        s_pil = np.mean([r["pil_bytes"] for r in sel]) / 1000
        s_own = np.mean([r["own_bytes"] for r in sel]) / 1000
        lines.append(
            f"| {kind} | {t_pil:.1f} | {t_own:.1f} | {t_pil / t_own:.1f}× | {s_pil:.0f} | {s_own:.0f} | "
            f"{s_own / s_pil - 1:+.0%} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda _: None)
