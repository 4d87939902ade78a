"""`brainvq demo`: the main job. Demo cohort -> VQ-VAE -> codes -> prior -> evaluation -> report."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the whole pipeline on the demo cohort and write report.html"
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument(
        "--quick", action="store_true", help="a smoke run of about a minute (tiny models)"
    )
    p.add_argument(
        "--whole-brain",
        action="store_true",
        help="the cohort over the whole brain, brain stem to vertex (configs/whole_brain.yaml)",
    )
    p.add_argument("--resume", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brainvq.app.commands.train import say_resume, show_trained
    from brainvq.app.pipeline import run_demo

    say_resume(args.out, args.resume)
    show_trained(
        run_demo(args.out, quick=args.quick, resume=args.resume, whole_brain=args.whole_brain),
        args.out,
    )
    return 0
