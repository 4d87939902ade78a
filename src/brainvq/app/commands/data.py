"""`brainvq data inspect SOURCE` and `brainvq data preview SOURCE --out grid.png`."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console

from brainvq.data import load_slices
from brainvq.data.sliceset import SPLITS, SliceSet
from brainvq.data.summary import format_summary, summarize
from brainvq.io.images import image_grid, save_png


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect and preview a data source")
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "source",
            help="'demo', an OASIS folder or zip, a PNG/JPEG folder, or volumes (NIfTI, MGZ, "
            "NRRD/MHA files, a DICOM series' folder or DICOMDIR, a BIDS tree)",
        )
        p.add_argument(
            "--size", type=int, default=128, help="working size, a multiple of 8 (default 128)"
        )
        p.add_argument(
            "--cache-dir",
            type=Path,
            default=None,
            help="cache folder (default $BRAINVQ_CACHE or ~/.cache/brainvq)",
        )
        p.add_argument(
            "--n-levels",
            type=int,
            default=32,
            help="axial slices per volume / demo subject (default 32)",
        )
        p.add_argument("--seed", type=int, default=0, help="demo cohort seed (default 0)")
        p.add_argument(
            "--series",
            help="a DICOM source's series to take: its SeriesNumber or SeriesInstanceUID "
            "(default: each study's T1 series, when only one is plausible)",
        )
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    inspect = sub.add_parser(
        "inspect", help="a table per split: images, subjects, intensity, notes"
    )
    common(inspect)
    inspect.add_argument(
        "--figures",
        type=Path,
        help="volume sources: register each scan to MNI152 and write its registration check "
        "(<scan>_registration.png: three planes with the template's outline) to this folder",
    )
    inspect.set_defaults(func=run_inspect)

    preview = sub.add_parser("preview", help="write a grid PNG of slices from one split")
    common(preview)
    preview.add_argument("--out", type=Path, required=True, help="PNG file to write")
    preview.add_argument(
        "--split", choices=SPLITS, default="test", help="split to show (default test)"
    )
    preview.add_argument("--n", type=int, default=16, help="number of slices (default 16)")
    preview.add_argument("--ncols", type=int, default=8, help="slices per row (default 8)")
    preview.set_defaults(func=run_preview)


def _load(args: argparse.Namespace) -> SliceSet:
    return load_slices(
        args.source,
        args.size,
        cache_dir=args.cache_dir,
        n_levels=args.n_levels,
        seed=args.seed,
        progress=not args.no_progress,
        series=args.series,
    )


def run_inspect(args: argparse.Namespace) -> int:
    sliceset = _load(args)
    table = format_summary(
        summarize(sliceset), title=f"brainvq data: {sliceset.source}", notes=sliceset.notes
    )
    Console().print(table)
    from brainvq.app.scans import input_scans, inspect_volumes

    found = input_scans(args.source, args.series)
    if found and args.figures is None:
        print("give --figures DIR to see each volume's registration to MNI152 (three planes)")
    elif found:
        for line in inspect_volumes(found.scans, args.figures, not args.no_progress):
            print(line)
    return 0


def preview_grid(sliceset: SliceSet, split: str, n: int, ncols: int) -> np.ndarray:
    """A labelled grid of `n` slices evenly spaced through `split` (ValueError if it is absent)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    part = sliceset.require_split(split)
    idx = np.unique(np.linspace(0, len(part) - 1, min(n, len(part))).round().astype(int))
    labels = [
        f"{part.subject[i]}" + (f" #{part.level[i]}" if part.level[i] >= 0 else "") for i in idx
    ]
    return image_grid(part.images[idx], ncols=ncols, labels=labels)


def run_preview(args: argparse.Namespace) -> int:
    # --n and --ncols are counts, held to their rule while the command line is parsed
    sliceset = _load(args)
    grid = preview_grid(sliceset, args.split, args.n, args.ncols)
    path = save_png(args.out, grid)
    print(f"wrote {path} ({grid.shape[1]}x{grid.shape[0]})")
    return 0
