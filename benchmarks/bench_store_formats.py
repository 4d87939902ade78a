"""Which on-disk format a slice store should use: write time, disk and random-batch reads.

The same slices (the demo cohort's, repeated with fresh noise up to N) are written as a plain
.npy read with preadv (brainvq.data.store.RowReader) or through its memory map, as Zarr arrays
(one slice per chunk, sharded, raw or zstd; 64 slices per chunk, zstd), and as a LitData
optimized dataset (StreamingDataset, random access). Reading is what training does: batches of
random rows, one thread. Formats whose package is missing are skipped and say so (Zarr and
LitData are not brainvq dependencies; install them to compare).

    python benchmarks/bench_store_formats.py [--n 50000] [--batches 200] [--out /tmp/formats]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from brainvq.data.demo import build_demo
from brainvq.data.store import RowReader
from brainvq.hardware import machine

BATCH = 64


def cohort(n: int, size: int) -> np.ndarray:
    base = build_demo(size, 32, (48, 8, 8), 0, show_progress=False).images  # (2048, S, S)
    rng = np.random.default_rng(0)
    out = np.empty((n, size, size), np.uint8)
    for start in range(0, n, len(base)):
        k = min(len(base), n - start)
        noise = rng.integers(-3, 4, size=(k, size, size))
        out[start : start + k] = np.clip(base[:k].astype(np.int16) + noise, 0, 255)
    return out


def disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def time_reads(read: Callable[[np.ndarray], np.ndarray], n: int, batches: int) -> float:
    """Images per second over `batches` random batches (after one warm-up batch)."""
    rng = np.random.default_rng(1)
    read(rng.integers(0, n, BATCH))
    t0 = time.perf_counter()
    for _ in range(batches):
        batch = read(rng.integers(0, n, BATCH))
        assert batch.shape[0] == BATCH
    return batches * BATCH / (time.perf_counter() - t0)


def npy_format(images: np.ndarray, out: Path) -> dict[str, Callable]:
    path = out / "images.npy"

    def write() -> None:
        np.save(path, images)

    def open_pread() -> Callable:
        reader = RowReader(np.load(path, mmap_mode="r"))
        return reader.read

    def open_mmap() -> Callable:
        mapped = np.load(path, mmap_mode="r")
        return lambda rows: np.array(mapped[np.sort(rows)])

    return {"npy + preadv": (write, open_pread, path), "npy memmap": (None, open_mmap, path)}


def zarr_formats(images: np.ndarray, out: Path) -> dict[str, tuple]:
    import zarr
    from zarr.codecs import ZstdCodec

    n, size, _ = images.shape
    found = {}
    for name, chunk, shard, compress in (
        ("zarr 1/chunk sharded raw", 1, 1024, False),
        ("zarr 1/chunk sharded zstd", 1, 1024, True),
        ("zarr 64/chunk zstd", 64, None, True),
    ):
        path = out / name.replace(" ", "_").replace("/", "-")

        def write(path=path, chunk=chunk, shard=shard, compress=compress) -> None:
            array = zarr.create_array(
                store=str(path),
                shape=images.shape,
                dtype="uint8",
                chunks=(chunk, size, size),
                shards=(shard, size, size) if shard else None,
                compressors=[ZstdCodec(level=3)] if compress else None,
            )
            step = shard or 1024
            for start in range(0, n, step):
                array[start : start + step] = images[start : start + step]

        def opener(path=path) -> Callable:
            array = zarr.open_array(str(path), mode="r")
            return lambda rows: array.get_orthogonal_selection((np.sort(rows), slice(None)))

        found[name] = (write, opener, path)
    return found


_MAPPED: dict[str, np.ndarray] = {}


def _litdata_item(item: tuple[str, int]) -> dict:
    """One sample for litdata.optimize's (spawned) workers, from the .npy written first."""
    path, i = item
    if path not in _MAPPED:
        _MAPPED[path] = np.load(path, mmap_mode="r")
    return {"image": np.array(_MAPPED[path][i]), "level": i % 32}


def litdata_format(images: np.ndarray, out: Path) -> dict[str, tuple]:
    import litdata

    path = out / "litdata"

    def write() -> None:
        source = out / "images.npy"  # written by the npy format first
        litdata.optimize(
            fn=_litdata_item,
            inputs=[(str(source), i) for i in range(len(images))],
            output_dir=str(path),
            chunk_bytes="64MB",
            num_workers=1,
            mode="overwrite",
        )

    def opener() -> Callable:
        dataset = litdata.StreamingDataset(str(path))
        return lambda rows: np.stack([np.asarray(dataset[int(i)]["image"]) for i in rows])

    return {"litdata StreamingDataset": (write, opener, path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("/tmp/brainvq-formats"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    images = cohort(args.n, args.size)
    formats: dict[str, tuple] = {}
    skipped = []
    formats.update(npy_format(images, args.out))
    for name, make in (("zarr", zarr_formats), ("litdata", litdata_format)):
        try:
            formats.update(make(images, args.out))
        except ImportError:
            skipped.append(name)
    print(f"machine: {machine().describe()}")
    print(
        f"{args.n} slices of {args.size}x{args.size} uint8, random batches of {BATCH}, one thread"
    )
    print(f"{'format':28} {'write s':>8} {'bytes/slice':>12} {'read images/s':>14}", flush=True)
    for name, (write, opener, path) in formats.items():
        t0 = time.perf_counter()
        if write is not None:
            write()
        write_s = time.perf_counter() - t0
        read = opener()
        check = np.array([1, 3, args.n - 1])
        assert np.array_equal(read(check), images[check]), name
        rate = time_reads(read, args.n, args.batches)
        per = disk_bytes(path) / args.n
        print(f"{name:28} {write_s:8.1f} {per:12.0f} {rate:14.0f}", flush=True)
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)}")
    shutil.rmtree(args.out, ignore_errors=True)
    os.sync()


if __name__ == "__main__":
    main()
