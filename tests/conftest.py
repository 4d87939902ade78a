"""Suite-wide fixtures: the whole session uses its own data cache, so nothing touches
~/.cache (set for the session, before any module- or session-scoped fixture trains a run);
the tiny trained run the anomaly tests share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Under pytest-xdist (`make test` runs one worker per core) each worker computes on one thread,
# and so do the commands it starts: two workers of two threads each on two cores would wait on
# each other. Set before torch is imported (anomaly_run imports it).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

import pytest  # noqa: E402
from anomaly_run import train_tiny_run  # noqa: E402


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
