"""The `brainvq` command itself: building its parser (every subcommand's flags, `--help`)
imports no Lightning and no pipeline, so help and argument errors answer at once (torch comes
with brainvq.hardware, which every command needs)."""

from __future__ import annotations

import subprocess
import sys


def test_building_the_parser_imports_no_lightning_or_pipeline() -> None:
    heavy = ("lightning", "brainvq.app.pipeline", "matplotlib", "optuna")
    code = (
        "import sys\n"
        "from brainvq.app.cli import build_parser\n"
        "build_parser()\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
