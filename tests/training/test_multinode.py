"""More than one machine, really launched: two `torchrun` groups on this machine, each one
"node" (--nnodes 2 --node-rank 0/1, one process each, gloo over loopback, its own data
cache and run folder as a second machine would have), train the tiny VQ-VAE together."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from tiny import TINY_CONFIG

from brainvq.io.bundle import load_vqvae

TORCHRUN = Path(sys.executable).with_name("torchrun")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_cmd(rank: int, port: int, run: Path) -> list[str]:
    """The multi-node recipe of docs/scale.md ("Several machines"), for node `rank` of 2."""
    return [
        str(TORCHRUN if TORCHRUN.exists() else shutil.which("torchrun")),
        "--nnodes=2",
        "--nproc-per-node=1",
        f"--node-rank={rank}",
        "--master-addr=127.0.0.1",
        f"--master-port={port}",
        "-m",
        "brainvq.app.cli",
        "train",
        "vqvae",
        "--data",
        "demo",
        "--config",
        str(TINY_CONFIG),
        "--out",
        str(run),
        "--accelerator",
        "cpu",
        "--num-nodes",
        "2",
        "--devices",
        "1",
        "--epochs",
        "2",
    ]


def test_two_nodes_launched_by_torchrun_train_to_identical_codebooks(tmp_path: Path) -> None:
    port = free_port()
    nodes = []
    try:
        for rank in (0, 1):
            env = {
                **os.environ,
                "OMP_NUM_THREADS": "1",
                "PYTHONUNBUFFERED": "1",
                "BRAINVQ_CACHE": str(tmp_path / f"cache{rank}"),
            }
            nodes.append(
                subprocess.Popen(
                    node_cmd(rank, port, tmp_path / f"node{rank}"),
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    encoding="utf-8",
                    errors="replace",
                )
            )
        logs = [node.communicate(timeout=400)[0] for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    assert [n.returncode for n in nodes] == [0, 0], [log[-3000:] for log in logs]
    bundle = load_vqvae(tmp_path / "node0" / "vqvae" / "VQVAE_Model")
    assert bundle.meta["world_size"] == 2 and bundle.meta["epochs_trained"] == 2
    # every rank all-gathers its codebook at the end of training; the run fails if they differ
    assert bundle.meta["codebook_sync_max_diff"] == 0.0
    # node 1 trained (its own data cache) but wrote no bundle: only global rank 0 does
    assert list((tmp_path / "cache1").glob("demo-*.store"))
    assert not (tmp_path / "node1" / "vqvae" / "VQVAE_Model").exists()
