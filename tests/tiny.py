"""Paths shared by the tests that train tiny runs (importable because pytest puts tests/ on sys.path)."""

from pathlib import Path

TESTS = Path(__file__).parent
TINY_CONFIG = TESTS / "configs" / "tiny.yaml"
