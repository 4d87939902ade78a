"""Suite-wide fixtures: every test gets its own data cache, so nothing touches ~/.cache."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path_factory.getbasetemp() / "brainvq-cache"))
