"""A command's log leaves out Lightning's litlogger advertisement and torch's LeafSpec
deprecation (brainvq.app.quiet_log), and keeps every other line and warning: through the real
command in a subprocess, and line by line in this process."""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from pathlib import Path

import pytest
from tiny import train_cmd

from brainvq.app.quiet_log import DROP_ADVERTISEMENT, RANK_ZERO_LOGGERS, quiet_third_party_lines

TIP = "💡 Tip: For seamless cloud logging"
LEAFSPEC = "`isinstance(treespec, LeafSpec)` is deprecated"


def test_a_training_command_logs_neither_the_tip_nor_the_deprecation(tmp_path: Path) -> None:
    environment = {**os.environ, "BRAINVQ_CACHE": str(tmp_path / "cache"), "TTY_INTERACTIVE": "0"}
    result = subprocess.run(
        train_cmd(tmp_path / "run"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=environment,
        timeout=300,
    )
    log = result.stdout.decode()
    assert result.returncode == 0, log[-2000:]
    assert "vqvae epoch 1/1" in log, log  # the command did train, through a Lightning Trainer
    assert "litlogger" not in log and TIP not in log, log
    assert "LeafSpec" not in log, log
    assert "GPU available" in log, log  # Lightning's other lines stay


@pytest.fixture()
def rank_zero_lines():
    """The lines Lightning's rank-zero logger lets through, and that logger's filters restored
    afterwards (the quieting is process-wide)."""
    import lightning.pytorch  # noqa: F401  (sets the rank-zero logger)
    import lightning_utilities.core.rank_zero as rank_zero

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    def unquiet() -> None:
        for name in RANK_ZERO_LOGGERS:
            logging.getLogger(name).removeFilter(DROP_ADVERTISEMENT)

    unquiet()  # a command run in this process before may have quieted it
    handler = Collect(logging.INFO)
    logger = rank_zero.log
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)
    unquiet()


def test_only_the_tip_is_dropped_from_lightnings_lines(rank_zero_lines: list[str]) -> None:
    from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

    tip = TIP + ", try installing [litlogger](https://pypi.org/project/litlogger/)"
    rank_zero_info(tip)
    assert rank_zero_lines == [tip]  # without the quieting, Lightning says it
    quiet_third_party_lines()
    quiet_third_party_lines()  # again: nothing changes
    rank_zero_info(tip)
    rank_zero_info("GPU available: False, used: False")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rank_zero_warn("The dataloader does not have many workers")
    assert rank_zero_lines == [tip, "GPU available: False, used: False"]
    assert [str(w.message) for w in caught] == ["The dataloader does not have many workers"]


def test_only_the_leafspec_deprecation_is_ignored() -> None:
    from torch.utils._pytree import LeafSpec

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LeafSpec()
        assert any(LEAFSPEC in str(w.message) for w in caught)  # torch does warn
        caught.clear()
        quiet_third_party_lines()
        LeafSpec()
        warnings.warn("a deprecation the user should see", FutureWarning, stacklevel=1)
        warnings.warn("a real warning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == [
        "a deprecation the user should see",
        "a real warning",
    ]
