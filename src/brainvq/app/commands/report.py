"""`brainvq report`: every figure of a run, and RUN/report.html."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write RUN/figures/*.png and RUN/report.html")
    p.add_argument("--run", type=Path, required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brainvq.report.build import build_report
    from brainvq.run import load_run

    load_run(args.run)
    html = build_report(args.run)
    print(f"report: {html}")
    return 0
