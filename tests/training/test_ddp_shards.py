"""Under DDP each process reads only its shard of a store: two processes (torchrun, gloo)
train on a store whose slices carry their own row number, and record the rows they read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from brainvq.data.builder import SlicePart
from brainvq.data.store import StoreWriter

TORCHRUN = Path(sys.executable).with_name("torchrun")
N_TRAIN = 96

SCRIPT = """
import json, sys
import lightning as L
import torch
from brainvq.data.dataset import SliceDataModule
from brainvq.data.store import open_store

class Recorder(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.rows = []

    def training_step(self, batch, _):
        images, _ = batch  # (B, 1, H, W): pixel (0, 0) and (0, 1) hold the row number
        ids = (images[:, 0, 0, :2] * 255).round().long()
        self.rows += (ids[:, 0] * 256 + ids[:, 1]).tolist()
        return (self.weight * images.mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

store, out = sys.argv[1], sys.argv[2]
module = Recorder()
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2,
                    logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, limit_val_batches=0)
trainer.fit(module, datamodule=SliceDataModule(open_store(store), batch_size=8, seed=3))
with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
    json.dump(module.rows, f)
"""


def row_store(path: Path) -> None:
    """N_TRAIN train slices then 8 validate ones; slice k holds k in pixels (0, 0) and (0, 1)."""
    n = N_TRAIN + 8
    images = np.zeros((n, 8, 8), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
    split = ["train"] * N_TRAIN + ["validate"] * 8
    with StoreWriter(path, 8) as writer:
        writer.add_part(SlicePart(images, split, ["s"] * n, [0] * n, [str(k) for k in range(n)]))
        writer.commit("rows", "key")


def test_each_ddp_process_reads_only_its_shard_of_a_store(tmp_path: Path) -> None:
    row_store(tmp_path / "rows.store")
    (tmp_path / "script.py").write_text(SCRIPT)
    result = subprocess.run(
        [
            str(TORCHRUN),
            "--standalone",
            "--nproc-per-node=2",
            str(tmp_path / "script.py"),
            str(tmp_path / "rows.store"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads((tmp_path / f"rank{r}.json").read_text(encoding="utf-8")) for r in (0, 1)]
    for epoch in (0, 1):
        half = N_TRAIN // 2
        shards = [set(r[epoch * half : (epoch + 1) * half]) for r in rows]
        assert all(len(s) == half for s in shards)  # no row twice within a shard
        assert not shards[0] & shards[1]  # no row read by both processes
        assert shards[0] | shards[1] == set(range(N_TRAIN))  # every train row, no other
    assert rows[0][: N_TRAIN // 2] != rows[0][N_TRAIN // 2 :]  # reshuffled each epoch
