"""Command line: ``python -m labelfree <command>`` (or the ``labelfree`` console script).

Commands:
    pseudo_labels INPUT OUTPUT   label-free nuclei masks for an image file or a folder of tiles
    sample_dir                   print where the embedded sample tiles are
    bundle_zip BUNDLE [--out D]  self-contained model-zoo zip of a bundle (``<name>_v<version>.zip``)
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import fire

from labelfree.imageio import InvalidImageError, list_images, load_rgb
from labelfree.sample import sample_dir as _sample_dir

log = logging.getLogger("labelfree")


def pseudo_labels(
    input: str | None = None,  # noqa: A002 - the CLI reads best as --input
    output: str = "out/pseudo_labels",
    stain_method: str = "vahadane",
    n_clusters: int = 3,
    seed: int = 0,
) -> None:
    """Run the label-free pseudo-label pipeline and write ``<stem>_inst.tif``, ``_seg.png`` and ``_overlay.png``.

    Args:
        input: an image file or a folder of png/tif/jpg tiles; default: the embedded MoNuSeg sample.
        output: output folder.
        stain_method: ``vahadane`` or ``macenko``.
        n_clusters: fuzzy c-means clusters (3 default, 2 as in the SSimNet paper).
        seed: random seed.

    Exits with status 1 if any input could not be processed; the others are still written.
    """
    from tqdm import tqdm

    from labelfree.transforms.pseudolabel import PseudoLabel
    from labelfree.writer import write_segmentation

    src = Path(input) if input is not None else _sample_dir() / "images"
    files = [src] if src.is_file() else list_images(src)
    op = PseudoLabel(stain_method=stain_method, n_clusters=n_clusters, seed=seed)
    failed: list[str] = []
    for path in tqdm(files, desc="pseudo labels", unit="tile"):
        try:
            rgb = load_rgb(path)
            t0 = time.perf_counter()
            res = op(rgb.transpose(2, 0, 1))
            write_segmentation(output, path.stem, rgb, res.instances)
            note = "" if res.has_tissue else " (no tissue: empty mask)"
            tqdm.write(f"{path.name}: {int(res.instances.max())} nuclei in {time.perf_counter() - t0:.2f} s{note}")
        except (InvalidImageError, FileNotFoundError) as exc:
            failed.append(f"{path.name}: {exc}")
            tqdm.write(f"ERROR {exc}")
    out = Path(output).resolve()
    print(f"masks (<stem>_inst.tif, <stem>_seg.png) and overlays (<stem>_overlay.png) written to {out}")
    if failed:
        print(f"{len(failed)} of {len(files)} inputs failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        sys.exit(1)
    return None


def sample_dir() -> str:
    """Folder of the embedded sample (``images/``, ``labels/``, ``ATTRIBUTION.md``)."""
    return str(_sample_dir())


def bundle_zip(bundle: str, out: str = "dist") -> str:
    """Build ``<out>/<bundle>_v<version>.zip`` (bundle files plus the ``labelfree`` package) and print its path."""
    from labelfree.bundle_zip import build_bundle_zip

    return str(build_bundle_zip(bundle, out))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    fire.Fire({"pseudo_labels": pseudo_labels, "sample_dir": sample_dir, "bundle_zip": bundle_zip})


if __name__ == "__main__":
    main()
