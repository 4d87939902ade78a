"""Data-layer benchmark: first (decoding) load vs cached load, and the demo cohort build time.

Uses the real OASIS PNGs in ../shared/oasis when present (or --source), else a generated
tree of 2,000 256x256 PNGs with the OASIS naming. Every run uses a fresh, temporary cache.

    python benchmarks/bench_data.py [--source PATH] [--size 128] [--no-demo]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from brainvq.data import load_slices
from brainvq.hardware import machine

REAL_OASIS = Path(__file__).resolve().parents[1].parent / "shared" / "oasis"
GENERATED_IMAGES = 2000


def generated_tree(root: Path, n_images: int = GENERATED_IMAGES) -> Path:
    """n_images smooth 256x256 PNGs as keras_png_slices_{train,validate}, 32 per subject."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-1:1:256j, -1:1:256j]
    brain = (xx / 0.8) ** 2 + (yy / 0.65) ** 2 <= 1
    for i in range(n_images):
        subject, k = divmod(i, 32)
        split = "validate" if subject % 10 == 9 else "train"
        texture = np.kron(rng.uniform(40, 140, (32, 32)), np.ones((8, 8)))
        pixels = (texture * brain).astype(np.uint8)
        folder = root / "keras_png_slices_data" / f"keras_png_slices_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"case_{subject:03d}_slice_{k}.nii.png")
    return root


def measure(source: Path | str, size: int, cache: Path) -> tuple[int, float, float]:
    """(images, first load seconds, cached load seconds) with a fresh cache folder."""
    t0 = time.perf_counter()
    n = len(load_slices(source, size, cache_dir=cache, progress=False))
    t1 = time.perf_counter()
    load_slices(source, size, cache_dir=cache, progress=False)
    return n, t1 - t0, time.perf_counter() - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="OASIS folder or zip")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--no-demo", action="store_true", help="skip the demo build")
    args = parser.parse_args()
    print(f"# {machine().describe()}; no model runs here (decoding and caching only)")
    table = Table(title=f"brainvq data loading ({os.cpu_count()} CPUs, size {args.size})")
    for column in ("source", "images", "first load s", "images/s", "cached load s", "speedup"):
        table.add_column(column, justify="left" if column == "source" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        source = args.source or (REAL_OASIS if REAL_OASIS.exists() else None)
        label = str(source) if source else f"generated tree ({GENERATED_IMAGES} PNGs)"
        if source is None:
            source = generated_tree(tmp_path / "tree")
        rows = [(label, source)]
        if not args.no_demo:
            rows.append(("demo cohort build (64 subjects x 32)", "demo"))
        for i, (name, src) in enumerate(rows):
            n, t_first, t_cached = measure(src, args.size, tmp_path / f"cache-{i}")
            table.add_row(
                name,
                str(n),
                f"{t_first:.2f}",
                f"{n / t_first:.0f}",
                f"{t_cached:.3f}",
                f"{t_first / t_cached:.0f}x",
            )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
