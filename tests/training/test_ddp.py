"""Multi-process training: the real CLI with Lightning DDP over 2 CPU processes (gloo)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tiny import train_cmd

from brainvq.io.bundle import load_vqvae


def test_two_process_ddp_run_ends_with_identical_codebooks(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        train_cmd(run, "--devices", "2", "--epochs", "2"),
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    bundle = load_vqvae(run / "vqvae" / "VQVAE_Model")
    assert bundle.meta["world_size"] == 2
    # Every rank all-gathers its codebook at the end of training; the run fails if they differ.
    assert bundle.meta["codebook_sync_max_diff"] == 0.0
    assert bundle.meta["epochs_trained"] == 2
    assert sorted(p.name for p in (run / "vqvae" / "frames").glob("*.png")) == [
        "epoch_000.png",
        "epoch_001.png",
    ]
