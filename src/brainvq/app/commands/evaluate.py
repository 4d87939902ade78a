"""`brainvq evaluate`: reconstruction metrics of a run's VQ-VAE on one split."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="SSIM/PSNR/MAE, code usage and rate of a run's VQ-VAE")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--data", help="data source (default: the run's)")
    p.add_argument(
        "--split", choices=["train", "validate", "test"], help="default: test, else validate"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brainvq.app.pipeline import evaluate_run
    from brainvq.app.run_data import run_slices
    from brainvq.report.summary import print_summary
    from brainvq.run import load_run

    config = load_run(args.run)
    sliceset = run_slices(config, source=args.data)
    doc = evaluate_run(args.run, sliceset, args.split)
    print_summary(
        {"vqvae": doc["vqvae"]}, title=f"VQ-VAE on {doc['vqvae']['split']} ({sliceset.source})"
    )
    return 0
