"""`brainvq reconstruct`: encode and decode images with a VQ-VAE bundle."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reconstruct", help="reconstruct a PNG, a folder, a NIfTI volume or an OASIS set"
    )
    p.add_argument(
        "--model", type=Path, required=True, help="a VQVAE_Model folder (or a run directory)"
    )
    p.add_argument(
        "--input",
        required=True,
        help="a PNG/JPEG, a folder of them, a NIfTI, or an OASIS folder/zip",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--limit", type=int, default=None, help="reconstruct at most this many slices")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brainvq.app.writers import reconstruct_to_folder

    written, grid = reconstruct_to_folder(args.model, args.input, args.out, limit=args.limit)
    print(
        f"wrote {len(written) - 2} reconstructions to {args.out}, the side-by-side grid {grid} "
        f"and {args.out / 'manifest.csv'} (output, input, level)"
    )
    return 0
