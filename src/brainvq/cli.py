"""The `brainvq` command: parse arguments, then call a typed function of the package.

Each subcommand lives in `brainvq.commands.<name>` with `add_parser(subparsers)` that
registers it and sets `func` to a handler `(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from brainvq import __version__
from brainvq.training.guards import NonFiniteLossError

COMMAND_MODULES = ("data", "train", "evaluate", "reconstruct", "sample", "report", "export", "demo")


class CliError(Exception):
    """An error the CLI reports as one line and exit code 2, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainvq",
        description="VQ-VAE and PixelCNN prior for 2D brain MRI slices.",
    )
    parser.add_argument("--version", action="version", version=f"brainvq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"brainvq.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("brainvq: interrupted", file=sys.stderr)
        return 130
    except (CliError, NonFiniteLossError, ValueError, OSError) as e:
        # Library messages may span lines (nibabel's do); the CLI promises one line.
        message = " ".join(str(e).split())
        print(f"brainvq {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
