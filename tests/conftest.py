"""Suite-wide fixtures: every test gets its own data cache, so nothing touches ~/.cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).parent
TINY_CONFIG = TESTS / "configs" / "tiny.yaml"

# Two cores are shared by the test process and its DDP children; one thread each keeps
# the suite from oversubscribing them.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path_factory.getbasetemp() / "brainvq-cache"))
