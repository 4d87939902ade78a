"""A slice store larger than the memory a process may take trains, evaluates and encodes to the
end: both stages of a tiny run and `brainvq encode`'s code file on a 64 MB store (65,536 slices
at 32x32), in a process whose data segment (RLIMIT_DATA: the heap and private anonymous memory;
a store's read-only file mapping is not counted) may grow by 32 MB only. Before the streaming
evaluation the VQ-VAE's evaluation alone needed 55 MB more than that (its test split as float32,
twice); the limit is set after a warm-up run on a small store, so that what every run allocates
once (imports, threads, Lightning) is not counted against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import TESTS

from brainvq.data.builder import SlicePart
from brainvq.data.store import StoreWriter

LEVELS, SIZE = 32, 32
BUDGET = 32 * 2**20  # bytes the data segment may grow by, after the warm-up
BIG_SUBJECTS = 2048  # 65,536 slices: 64 MB of images, twice the budget

CHILD = """
import resource, sys
from pathlib import Path

import torch

sys.path.insert(0, sys.argv[5])
from tiny import TINY_CONFIG

from brainvq.app import pipeline
from brainvq.data.store import open_store
from brainvq.hardware import keep_freed_memory
from brainvq.inference.codes import write_codes_file
from brainvq.io.bundle import load_vqvae
from brainvq.run_config import load_run_config, save_run_config

torch.set_num_threads(1)
keep_freed_memory()  # as the CLI does: freed memory stays in the heap
small, big, out, budget = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
budget_train = {"limit_train_batches": 3, "threads": 1}
overrides = {"vqvae_train": budget_train, "prior_train": budget_train}
config = load_run_config(TINY_CONFIG, {**overrides, "sample": {"n_generation_eval": 0}})


def everything(store, run):
    sliceset = open_store(store)
    run.mkdir(parents=True)
    save_run_config(config, run / "config.yaml")
    pipeline.train_vqvae(run, config, sliceset)
    pipeline.train_prior(run, config, sliceset)
    model = load_vqvae(run).model
    write_codes_file(run / "codes.npz", model, sliceset.images, sliceset.filename, sliceset.level)


def data_bytes():
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024


everything(small, out / "warm")
resource.setrlimit(resource.RLIMIT_DATA, (data_bytes() + budget, resource.RLIM_INFINITY))
everything(big, out / "big")
"""


def write_store(path: Path, n_subjects: int) -> Path:
    """A store of n_subjects x LEVELS noisy SIZE x SIZE slices, split 80/10/10 by subject."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 240, (LEVELS, SIZE, SIZE), dtype=np.uint8)
    n_train, n_validate = int(n_subjects * 0.8), int(n_subjects * 0.1)
    splits = ["train"] * n_train + ["validate"] * n_validate
    splits += ["test"] * (n_subjects - len(splits))
    with StoreWriter(path, SIZE) as writer:
        for s, split in enumerate(splits):
            images = base + rng.integers(0, 16, base.shape, dtype=np.uint8)
            names = [f"case_{s:05d}_slice_{k}.png" for k in range(LEVELS)]
            subject = [f"{s:05d}"] * LEVELS
            writer.add_part(
                SlicePart(images, [split] * LEVELS, subject, list(range(LEVELS)), names)
            )
        writer.commit("synthetic cohort", f"test-{n_subjects}", n_levels=LEVELS)
    return path


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc (Linux)")
def test_a_store_larger_than_the_memory_limit_trains_evaluates_and_encodes(tmp_path: Path):
    small = write_store(tmp_path / "small.store", 32)
    big = write_store(tmp_path / "big.store", BIG_SUBJECTS)
    assert (big / "images.npy").stat().st_size > 2 * BUDGET
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [str(small), str(big), str(tmp_path), str(BUDGET), str(TESTS)]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "big"
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    test_subjects = BIG_SUBJECTS - int(BIG_SUBJECTS * 0.8) - int(BIG_SUBJECTS * 0.1)
    assert metrics["vqvae"]["n_images"] == test_subjects * LEVELS  # the whole test split
    assert metrics["prior"]["nll_bits_per_code_test"] is not None
    with np.load(run / "codes.npz") as codes:
        assert codes["codes"].shape == (BIG_SUBJECTS * LEVELS, 8, 8)
        assert len(codes["names"]) == len(codes["levels"]) == BIG_SUBJECTS * LEVELS
