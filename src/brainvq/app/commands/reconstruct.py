"""`brainvq reconstruct` and `brainvq encode`: a VQ-VAE's reconstructions and code maps."""

from __future__ import annotations

import argparse
from pathlib import Path

SERIES_HELP = (
    "a DICOM input's series to take: its SeriesNumber or SeriesInstanceUID (default: each "
    "study's T1 series, when only one is plausible)"
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reconstruct",
        help="reconstruct a PNG, a folder, a volume (NIfTI, MGZ, NRRD/MHA, DICOM, BIDS) or an "
        "OASIS set",
    )
    p.add_argument(
        "--model", type=Path, required=True, help="a VQVAE_Model folder (or a run directory)"
    )
    p.add_argument(
        "--input",
        required=True,
        help="a PNG/JPEG, a folder of them, a volume (NIfTI, MGZ, NRRD/MHA), a DICOM series' "
        "folder or DICOMDIR, a BIDS tree, or an OASIS folder/zip",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--limit", type=int, default=None, help="reconstruct at most this many slices")
    p.add_argument("--series", help=SERIES_HELP)
    p.set_defaults(func=run)
    e = sub.add_parser(
        "encode",
        help="code maps of a PNG, a folder, a volume (in its own space too) or an OASIS set",
    )
    e.add_argument("--model", type=Path, required=True, help="a VQVAE_Model folder or a run")
    e.add_argument(
        "--input",
        required=True,
        help="a PNG/JPEG, a folder, a volume (NIfTI, MGZ, NRRD/MHA, DICOM, BIDS), an OASIS set",
    )
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--series", help=SERIES_HELP)
    e.set_defaults(func=run_encode)


def run(args: argparse.Namespace) -> int:
    from brainvq.app.reconstruct import reconstruct_input

    written, grid, notes = reconstruct_input(
        args.model, args.input, args.out, limit=args.limit, series=args.series
    )
    for note in notes:
        print(f"note: {note}")
    print(
        f"wrote {len(written)} files to {args.out}: reconstructions (PNG; volumes also in "
        f"their own space, as NIfTI), the side-by-side grid {grid} and manifest.csv (output, "
        "input, level)"
    )
    return 0


def run_encode(args: argparse.Namespace) -> int:
    from brainvq.app.reconstruct import encode_input

    written, notes = encode_input(args.model, args.input, args.out, series=args.series)
    for note in notes:
        print(f"note: {note}")
    print(
        f"wrote {args.out / 'codes.npz'} (codes, names, levels) and {len(written) - 1} more files"
    )
    return 0
