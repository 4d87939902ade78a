"""Paths for the tests that train tiny runs (pytest puts tests/ on sys.path)."""

from pathlib import Path

TESTS = Path(__file__).parent
TINY_CONFIG = TESTS / "configs" / "tiny.yaml"
