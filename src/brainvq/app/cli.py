"""The `brainvq` command: parse arguments, then call a typed function of the package.

Each subcommand lives in `brainvq.app.commands.<name>` with `add_parser(subparsers)` that
registers it and sets `func` to a handler `(args) -> int`. Every front door (`brainvq`,
`python train.py`, `python predict.py`) reads its flags the same way (brainvq.app.flags: one
rule per kind of number, a bad command line in one line) and reports errors the same way:
`guarded`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from brainvq._version import __version__
from brainvq.app.flags import Parser, apply_rules
from brainvq.app.quiet_log import quiet_third_party_lines
from brainvq.hardware import keep_freed_memory
from brainvq.training.guards import NonFiniteLossError

COMMAND_MODULES = (
    "data",
    "train",
    "tune",
    "evaluate",
    "reconstruct",
    "sample",
    "anomaly",
    "report",
    "export",
    "prune",
    "demo",
)


class CliError(Exception):
    """An error the CLI reports as one line and exit code 2, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="brainvq",
        description="VQ-VAE and PixelCNN prior for 2D brain MRI slices.",
    )
    parser.add_argument("--version", action="version", version=f"brainvq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"brainvq.app.commands.{name}").add_parser(sub)
    return apply_rules(parser)


EXPECTED_ERRORS = (CliError, NonFiniteLossError, ValueError, OSError)


def guarded(prog: str, run: Callable[[], int | None]) -> int:
    """Call `run`; an expected error (bad input, a file that cannot be read or written, a loss
    that stopped being finite) becomes one line `<prog>: error: <message>` on stderr and exit
    code 2, an interrupt exit code 130. Anything else is a bug and keeps its traceback."""
    try:
        return int(run() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as e:
        # Library messages may span lines (nibabel's do); the promise is one line.
        message = " ".join(str(e).split())
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()
    quiet_third_party_lines()
    return guarded(f"brainvq {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
