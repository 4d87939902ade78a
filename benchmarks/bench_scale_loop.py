"""Cohorts larger than memory, the training loop: a synthetic PNG cohort of 10^4, 10^5 and
10^6 slices at 128x128 (benchmarks/scale_cohort.py). The whole commands: bench_scale.py.

For each size, each step in a process of its own while this one samples the memory of that
process and its children (the sum of their proportional set sizes, PSS, every 0.2 s; PSS
counts a page shared by several processes once in all, and a file page only while mapped):

1. cache build: `load_slices` of the PNG folder into its slice store, decoding in a pool of
   `--workers` processes: seconds, peak memory, disk of the store per million slices;
2. training: a small VQ-VAE (MODEL below: fast enough to encode 10^6 slices in minutes on 2
   cores, and so more demanding of the data path than the packaged configs' models; VQVAEModule
   in a Lightning Trainer, batch 16, fp32, no validation) for `--train-seconds`, reading
   batches from the store (its
   pages dropped from the page cache first, so reads start from the disk) and, up to
   `--in-memory-max` slices, from the same slices held in memory: images/s after 5 warm-up
   steps, the share of that time spent between steps (reading and collating the next batch:
   what the store can cost, a measure that other jobs on the machine disturb less than
   images/s), peak memory;
3. the data loader alone, store against memory (images/s of batches of 16 for 10 s): the
   headroom of the data path where the model is faster than here (a GPU);
4. encode-all: every split's code maps (encode_splits) with the trained weights: seconds,
   peak memory, disk of the code maps per million slices. Above `--encode-all-max` slices
   only the validate split is encoded (encode_split, about a tenth of the store, read from
   the whole store's file) and the seconds are scaled to all slices (marked ~ in the table):
   encoding is the model's compute, linear in N, and 10^6 slices would take hours here.

The cohort: benchmarks/scale_cohort.py. Needs about 19 GB of disk at 10^6 (the store and the
code maps).

    python benchmarks/bench_scale_loop.py [--sizes 10000 100000 1000000] [--train-seconds 60]
        [--root /tmp/brainvq-scale] [--workers 2] [--loader-workers 0] [--in-memory-max 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scale_cohort import SIZE, TreeMemory, cohort

BATCH = 16
MODEL = {
    "downsample": 4,
    "channels": [16, 32],
    "res_blocks": 1,
    "res_channels": 16,
    "code_dim": 32,
    "codebook_size": 256,
    "update": "ema",
}


def run_step(step: str, **options) -> dict:
    """Run `step` of this script in a child process; its JSON result with peak_mb added."""
    cmd = [sys.executable, __file__, "--step", step, "--options", json.dumps(options)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", env=env
    )
    memory = TreeMemory(proc.pid)
    memory.start()
    out, _ = proc.communicate()
    memory.stop.set()
    memory.join()
    if proc.returncode != 0:
        raise RuntimeError(f"step {step} failed ({proc.returncode})")
    return {**json.loads(out.strip().splitlines()[-1]), "peak_mb": memory.peak_mb}


# ---- the steps (each in its own process) --------------------------------------------------


def _slices(o: dict, in_memory: bool = False):
    from brainvq.data import load_slices
    from brainvq.data.sliceset import SliceSet

    s = load_slices(o["folder"], SIZE, cache_dir=Path(o["cache"]), progress=False)
    if not in_memory:
        return s
    return SliceSet(
        images=np.array(s.images),
        split=np.array(s.split),
        subject=np.array(s.subject),
        level=np.array(s.level),
        filename=np.array(s.filename),
        source=s.source,
        notes=s.notes,
        splits_present=s.splits_present,
        n_levels=s.n_levels,
    )


def _drop_page_cache(path: Path) -> None:
    """Evict `path`'s pages from the page cache (only this file's), so reads go to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def step_build(o: dict) -> dict:
    from brainvq.data import load_slices

    t0 = time.perf_counter()
    s = load_slices(
        o["folder"], SIZE, cache_dir=Path(o["cache"]), workers=o["workers"], progress=False
    )
    seconds = time.perf_counter() - t0
    store = Path(s.images.filename).parent
    disk = sum(p.stat().st_size for p in store.iterdir())
    return {"seconds": seconds, "n": len(s), "disk_per_million_gb": disk / len(s) * 1e6 / 1e9}


def _vqvae_config():
    from brainvq.config import from_dict
    from brainvq.models.vqvae import VQVAEConfig

    return from_dict(VQVAEConfig, {**MODEL, "image_size": SIZE})


def step_train(o: dict) -> dict:
    import lightning as L
    import torch

    from brainvq.data.dataset import SliceDataModule
    from brainvq.hardware import keep_freed_memory
    from brainvq.io.bundle import save_bundle
    from brainvq.run_config import TrainConfig
    from brainvq.training.vqvae_module import VQVAEModule

    keep_freed_memory()
    sliceset = _slices(o, in_memory=o["mode"] == "memory")
    if o["mode"] == "store":
        _drop_page_cache(Path(sliceset.images.filename))
    L.seed_everything(0, verbose=False)
    cfg = TrainConfig(epochs=1, batch_size=BATCH, lr=0.002, accelerator="cpu", precision="32")
    module = VQVAEModule(_vqvae_config(), cfg, total_steps=10_000)

    class Rate(L.Callback):
        """Images/s after 5 warm-up steps, and the share of that time spent between steps
        (with no DataLoader workers: reading and collating the next batch)."""

        def __init__(self) -> None:
            self.n, self.t0, self.t1, self.waiting = 0, 0.0, 0.0, 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx > 5:
                self.waiting += time.perf_counter() - self.t1

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.t1 = time.perf_counter()
            if batch_idx == 5:
                self.t0 = self.t1
            elif batch_idx > 5:
                self.n += len(batch[0])

    rate = Rate()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        max_time={"seconds": o["seconds"]},
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[rate],
    )
    data = SliceDataModule(sliceset, batch_size=BATCH, num_workers=o["loader_workers"])
    trainer.fit(module, datamodule=data)
    if not rate.n:
        raise RuntimeError(f"fewer than 7 steps in {o['seconds']} s: give --train-seconds more")
    images_per_s = rate.n / (rate.t1 - rate.t0)
    data_share = rate.waiting / (rate.t1 - rate.t0)
    if o.get("bundle"):
        save_bundle(Path(o["bundle"]), module.model.eval(), module.model.config, kind="vqvae")
    return {
        "images_per_s": images_per_s,
        "data_share": data_share,
        "steps": trainer.global_step,
        "threads": torch.get_num_threads(),
    }


def step_loader(o: dict) -> dict:
    from brainvq.data.dataset import SliceDataModule

    sliceset = _slices(o, in_memory=o["mode"] == "memory")
    if o["mode"] == "store":
        _drop_page_cache(Path(sliceset.images.filename))
    loader = SliceDataModule(sliceset, batch_size=BATCH, num_workers=o["loader_workers"])
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 10:  # epochs until 10 s have passed
        for x, _ in loader.train_dataloader():
            n += len(x)
            if time.perf_counter() - t0 > 10:
                break
    return {"images_per_s": n / (time.perf_counter() - t0)}


def step_encode(o: dict) -> dict:
    from brainvq.inference.codes import encode_split, encode_splits
    from brainvq.io.bundle import load_vqvae

    sliceset = _slices(o)
    bundle = load_vqvae(Path(o["bundle"]))
    codes = Path(o["codes"])
    shutil.rmtree(codes, ignore_errors=True)
    t0 = time.perf_counter()
    if o["one_split"]:
        n = int((sliceset.split == "validate").sum())
        encode_split(bundle.model, sliceset, "validate", codes)
    else:
        n = len(sliceset)
        encode_splits(bundle, sliceset, codes)
    seconds = time.perf_counter() - t0
    disk = sum(p.stat().st_size for p in codes.iterdir())
    return {
        "seconds": seconds * len(sliceset) / n,
        "measured_on": n,
        "disk_per_million_gb": disk / n * 1e6 / 1e9,
    }


STEPS = {"build": step_build, "train": step_train, "loader": step_loader, "encode": step_encode}


# ---- the table ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--root", type=Path, default=Path("/tmp/brainvq-scale"))
    parser.add_argument("--train-seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--loader-workers", type=int, default=0)
    parser.add_argument("--in-memory-max", type=int, default=100_000)
    parser.add_argument("--encode-all-max", type=int, default=100_000)
    parser.add_argument("--encode-max", type=int, default=10**9, help="no encoding above")
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(STEPS[args.step](json.loads(args.options))))
        return
    from brainvq.hardware import machine

    print(f"machine: {machine().describe()}", flush=True)
    rows = []
    for n in sorted(args.sizes):
        folder = cohort(args.root, n)
        cache = args.root / "cache"
        common = {"folder": str(folder), "cache": str(cache), "loader_workers": args.loader_workers}
        shutil.rmtree(cache, ignore_errors=True)  # a fresh build for every size and run
        build = run_step("build", **common, workers=args.workers)
        print(f"{n}: build {build}", flush=True)
        bundle = args.root / f"vqvae_{n}"
        train = run_step(
            "train", **common, mode="store", seconds=args.train_seconds, bundle=str(bundle)
        )
        print(f"{n}: train (store) {train}", flush=True)
        memory = loader_memory = None
        if n <= args.in_memory_max:
            memory = run_step("train", **common, mode="memory", seconds=args.train_seconds)
            print(f"{n}: train (memory) {memory}", flush=True)
            loader_memory = run_step("loader", **common, mode="memory")
        loader_store = run_step("loader", **common, mode="store")
        print(f"{n}: loader store {loader_store} memory {loader_memory}", flush=True)
        encode = None
        if n <= args.encode_max:
            encode = run_step(
                "encode",
                **common,
                bundle=str(bundle),
                codes=str(args.root / f"codes_{n}"),
                one_split=n > args.encode_all_max,
            )
        print(f"{n}: encode {encode}", flush=True)
        rows.append((n, build, train, memory, loader_store, loader_memory, encode))
        shutil.rmtree(args.root / f"codes_{n}", ignore_errors=True)
    print()
    print(f"machine: {machine().describe()}")
    print(
        f"VQ-VAE {MODEL} at {SIZE}x{SIZE}, batch {BATCH}, fp32, "
        f"{args.train_seconds:.0f} s of training per row, {args.workers} build workers, "
        f"{args.loader_workers} DataLoader workers; memory: peak summed PSS of the step's processes"
    )
    head = (
        f"{'slices':>9} | {'build s':>7} {'MB':>5} {'GB/M':>5} | {'store img/s':>11} "
        f"{'data':>5} {'MB':>5} | {'memory img/s':>12} {'data':>5} {'MB':>5} | "
        f"{'loader store':>12} {'memory':>7} | {'encode s':>8} {'MB':>5} {'GB/M':>5}"
    )
    print(head)
    print("-" * len(head))
    for n, build, train, memory, ls, lm, enc in rows:
        in_memory = f"{'-':>12} {'-':>5} {'-':>5}"
        if memory:
            in_memory = (
                f"{memory['images_per_s']:12.1f} {memory['data_share']:5.1%} "
                f"{memory['peak_mb']:5.0f}"
            )
        lm_rate = f"{lm['images_per_s']:7.0f}" if lm else f"{'-':>7}"
        encoded = f"{'-':>8} {'-':>5} {'-':>5}"
        if enc:
            encoded = (
                f"{'~' if enc['measured_on'] < n else ' '}{enc['seconds']:7.0f} "
                f"{enc['peak_mb']:5.0f} {enc['disk_per_million_gb']:5.2f}"
            )
        print(
            f"{n:>9} | {build['seconds']:7.1f} {build['peak_mb']:5.0f} "
            f"{build['disk_per_million_gb']:5.1f} | {train['images_per_s']:11.1f} "
            f"{train['data_share']:5.1%} {train['peak_mb']:5.0f} | {in_memory} | "
            f"{ls['images_per_s']:12.0f} {lm_rate} | {encoded}"
        )


if __name__ == "__main__":
    main()
