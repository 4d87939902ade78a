"""The flags of every front door (`brainvq`, `train.py`, `predict.py`) read one way.

- Every numeric flag follows the rule of its kind (brainvq.values), looked up by its name in
  FLAG_RULES when the parser is built (`apply_rules`): the same rule for every --seed, every
  count, every budget in minutes, whichever command it belongs to. A flag whose number breaks
  it is refused while the command line is parsed, before anything is read or written.
- A bad command line is one line, `<prog>: error: <what>`, and exit code 2, as every other
  bad input is (brainvq.app.cli.guarded), not argparse's usage block.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from brainvq.values import (
    COUNT,
    HEALINGS,
    INDEX,
    MINUTES,
    MINUTES_OR_ZERO,
    POSITIVE,
    RATE,
    SEED,
    SHARE,
    SIZE,
    Rule,
)

FLAG_RULES: dict[str, Rule] = {
    "--seed": SEED,
    **dict.fromkeys(
        (
            "--n",
            "--subjects",
            "--n-levels",
            "--ncols",
            "--trials",
            "--calibration",
            "--limit",
            "--epochs",
            "--batch-size",
            "--devices",
            "--num-nodes",
            "--threads",
            "--top-k",
        ),
        COUNT,
    ),
    "--n-heal": HEALINGS,
    "--size": SIZE,
    "--level": INDEX,
    "--first-level": INDEX,
    "--keep-rows": INDEX,
    "--max-minutes": MINUTES,
    "--trial-minutes": MINUTES,
    "--finetune-minutes": MINUTES_OR_ZERO,
    "--alpha": RATE,
    "--scan-alpha": RATE,
    "--amount": SHARE,
    "--lr": POSITIVE,
    "--temperature": POSITIVE,
}


def flag_type(rule: Rule) -> Callable[[str], int | float]:
    """An argparse `type` that reads a number and holds it to `rule`."""

    def parse(text: str) -> int | float:
        try:
            value = int(text) if rule.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {rule.expected}, got {text!r}") from None
        if not rule.accepts(value):
            raise argparse.ArgumentTypeError(f"expected {rule.expected}, got {text}")
        return value

    return parse


def apply_rules(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give every flag of `parser` and its subcommands that FLAG_RULES names its rule's type."""
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                apply_rules(sub)
            continue
        rule = next((FLAG_RULES[o] for o in action.option_strings if o in FLAG_RULES), None)
        if rule is not None:
            action.type = flag_type(rule)
    return parser


class Parser(argparse.ArgumentParser):
    """argparse, with a bad command line reported in one line (see the module docstring)."""

    def error(self, message: str) -> NoReturn:
        # named as brainvq.app.cli.guarded names a command's errors: `brainvq data`, not
        # `brainvq data inspect`
        command = " ".join(self.prog.split()[:2])
        self.exit(2, f"{command}: error: {message} (see {self.prog} --help)\n")
