"""Suite-wide fixtures: the whole session uses its own data cache, so nothing touches
~/.cache (set for the session, before any module- or session-scoped fixture trains a run);
the tiny trained run the anomaly tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from anomaly_run import train_tiny_run


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BRAINVQ_CACHE", str(tmp_path_factory.getbasetemp() / "brainvq-cache"))
        yield


@pytest.fixture(scope="session")
def anomaly_tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained run (tests/anomaly_run.py) for the anomaly maps, their calibration and
    `brainvq anomaly`. Tests that write into it (a calibration) copy it or clear what they
    write first."""
    return train_tiny_run(tmp_path_factory.mktemp("anomaly"))
