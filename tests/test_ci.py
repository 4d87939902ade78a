"""CI (.ci/run) names the tests of its AVX2-limited second pass by path: every path it names
must exist, so that moving a test file cannot silently drop it from that pass."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_avx2_pass_names_only_existing_tests() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    found = re.search(r'AVX2_TESTS="([^"]*)"', script)
    assert found, "no AVX2_TESTS list in .ci/run"
    paths = found.group(1).replace("\\", " ").split()
    assert paths
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, missing
