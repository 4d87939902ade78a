"""The `brainvq` command itself: building its parser (every subcommand's flags, `--help`)
imports no Lightning and no pipeline, so help and argument errors answer at once (torch comes
with brainvq.hardware, which every command needs); every numeric flag is held to its kind's
rule; and its training output in a log is one line per epoch, while a terminal keeps its live
bars."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from tiny import train_cmd

from brainvq.app.cli import build_parser
from brainvq.app.entry_points import predict_parser, train_parser


def test_building_the_parser_imports_no_lightning_or_pipeline() -> None:
    heavy = ("lightning", "brainvq.app.pipeline", "matplotlib", "optuna")
    code = (
        "import sys\n"
        "from brainvq.app.cli import build_parser\n"
        "build_parser()\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def train_log(tmp_path: Path, epochs: int, **env: str) -> str:
    """stdout and stderr together of a tiny training whose output is not a terminal."""
    environment = {**os.environ, "BRAINVQ_CACHE": str(tmp_path / "cache"), **env}
    result = subprocess.run(
        train_cmd(tmp_path / "run", "--epochs", str(epochs)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=environment,
        timeout=300,
    )
    log = result.stdout.decode()  # as bytes: text mode would turn the bars' \r into \n
    assert result.returncode == 0, log[-2000:]
    return log


def test_a_log_gets_one_line_per_epoch_and_a_terminal_keeps_its_bars(tmp_path: Path) -> None:
    log = train_log(tmp_path / "log", 2, TTY_INTERACTIVE="0")
    assert "\r" not in log, log[:2000]
    epochs = [line for line in log.splitlines() if line.startswith("vqvae epoch ")]
    assert [e.split(":")[0] for e in epochs] == ["vqvae epoch 1/2", "vqvae epoch 2/2"]
    assert all("val/ssim" in e and "train/loss" in e for e in epochs), epochs
    assert len(log.splitlines()) < 40, log
    # where progress can be drawn live (rich's TTY_INTERACTIVE=1, as on a terminal), it is
    terminal = train_log(tmp_path / "terminal", 1, TTY_INTERACTIVE="1")
    assert "\r" in terminal and "vqvae epoch " not in terminal


def numeric_flags(parser: argparse.ArgumentParser, prog: str = "") -> dict[str, object]:
    """(command flag) -> its argparse type, for every flag of `parser` and its subcommands."""
    found: dict[str, object] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= numeric_flags(sub, f"{prog} {name}".strip())
        elif action.option_strings and action.type is not None:
            found[f"{prog} {action.option_strings[-1]}".strip()] = action.type
    return found


def test_every_numeric_flag_has_its_kinds_rule() -> None:
    """No flag reads a bare int or float: each one that takes a number is held to the rule
    of its kind (brainvq.app.flags.FLAG_RULES), so a new flag cannot slip past it."""
    flags = {
        **numeric_flags(build_parser()),
        **numeric_flags(train_parser(), "train.py"),
        **numeric_flags(predict_parser(), "predict.py"),
    }
    bare = sorted(f for f, kind in flags.items() if kind in (int, float))
    assert not bare, f"numeric flags without a rule in FLAG_RULES: {bare}"
    ruled = [f for f, kind in flags.items() if kind not in (int, float, Path, str)]
    assert len(ruled) >= 30, ruled  # every command's seeds, counts, minutes, rates...
