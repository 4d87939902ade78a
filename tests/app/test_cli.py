"""The `brainvq` command itself: building its parser (every subcommand's flags, `--help`)
imports no torch, so help and argument errors answer at once."""

from __future__ import annotations

import subprocess
import sys


def test_building_the_parser_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from brainvq.app.cli import build_parser\n"
        "build_parser()\n"
        "print(sorted(m for m in ('torch', 'lightning', 'brainvq.app.pipeline') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
