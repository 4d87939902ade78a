"""What the scale benchmarks share: a synthetic PNG cohort of any size, and the memory of a
process tree sampled over time (bench_scale.py: the whole commands; bench_scale_loop.py: the
store, the training loop and the data loader alone).

The cohort: PER_SUBJECT slices per virtual subject (names `case_<subject>_slice_<k>.png`, so a
folder source splits it by subject, 80/10/10), each a hard link to one of UNIQUE PNGs at
SIZE x SIZE (demo-cohort slices with fresh noise, written once under the root): writing a
million distinct PNGs here takes longer than the benchmarks, and decoding a file costs the same
whichever bytes it holds.

Memory: every `every_s` seconds the sum over a process and all its descendants of
/proc/PID/smaps_rollup's Pss (everything it maps, a page shared by k processes counted 1/k) and
of Pss_Anon + Pss_Shmem ("anonymous": the heap, tensors, DataLoader workers' shared batches;
not the pages of mapped files, which the kernel can drop and read again: a memory-mapped store
or code maps). The peak of each, overall and per phase (the phase the process names in a file,
see bench_scale.py).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections import defaultdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np

SIZE = 128
PER_SUBJECT = 100
PER_FOLDER = 10_000  # files per sub-folder of the generated cohort
UNIQUE = 20_000  # distinct PNGs the cohort's files link to


def _write_chunk(job: tuple[str, int, int]) -> int:
    """Write unique PNGs [start, end) under root (a pool worker)."""
    from PIL import Image

    from brainvq.data.demo import build_demo

    root, start, end = Path(job[0]), job[1], job[2]
    base = build_demo(SIZE, 32, (48, 8, 8), 0, show_progress=False, workers=0).images
    rng = np.random.default_rng(start)
    for i in range(start, end):
        noisy = base[i % len(base)].astype(np.int16) + rng.integers(-3, 4, (SIZE, SIZE))
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
        image.save(root / f"u{i:05d}.png", compress_level=1)
    return end - start


def cohort(root: Path, n: int) -> Path:
    """The folder of an n-slice cohort (made once): hard links to the UNIQUE PNGs."""
    unique = root / "unique"
    if not (unique / "done").is_file():
        shutil.rmtree(unique, ignore_errors=True)
        unique.mkdir(parents=True)
        step = 1_000
        jobs = [(str(unique), s, min(s + step, UNIQUE)) for s in range(0, UNIQUE, step)]
        with get_context("spawn").Pool(os.cpu_count()) as pool:
            written = sum(pool.imap_unordered(_write_chunk, jobs))
        (unique / "done").write_text(str(written))
    folder = root / f"pngs_{n}"
    if not (folder / "done").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        for i in range(n):
            subject, k = divmod(i, PER_SUBJECT)
            path = folder / f"g{i // PER_FOLDER:04d}" / f"case_{subject:05d}_slice_{k}.png"
            if k == 0 or i % PER_FOLDER == 0:
                path.parent.mkdir(parents=True, exist_ok=True)
            os.link(unique / f"u{i % UNIQUE:05d}.png", path)
        (folder / "done").write_text(str(n))
    return folder


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text(encoding="utf-8").split()]
        except OSError:
            pass
    return found


def process_mb(pid: int) -> tuple[float, float]:
    """(Pss, Pss_Anon + Pss_Shmem) of process `pid` in MB; zeros once it is gone."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text(encoding="utf-8").splitlines():
            key, _, rest = line.partition(":")
            if key in ("Pss", "Pss_Anon", "Pss_Shmem"):
                values[key] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return values.get("Pss", 0.0), values.get("Pss_Anon", 0.0) + values.get("Pss_Shmem", 0.0)


def tree_mb(pid: int) -> tuple[float, float]:
    """process_mb summed over `pid` and all its descendants."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += _children(p)
    pss = anon = 0.0
    for p in tree:
        a, b = process_mb(p)
        pss, anon = pss + a, anon + b
    return pss, anon


def current_phase(phase_file: Path | None) -> str:
    """The last phase named in `phase_file` (lines `<seconds> <phase>`), "start" before any."""
    if phase_file is None:
        return "all"
    try:
        lines = phase_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return "start"
    return lines[-1].split(" ", 1)[1] if lines else "start"


class TreeMemory(threading.Thread):
    """The peaks over time of a process tree's summed PSS (peak_mb) and anonymous memory
    (peak_anon_mb), overall and per phase (phase_anon_mb, phase_mb) when `phase_file` is
    given."""

    def __init__(self, pid: int, every_s: float = 0.2, phase_file: Path | None = None) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.phase_file = pid, every_s, phase_file
        self.peak_mb = self.peak_anon_mb = 0.0
        self.phase_mb: dict[str, float] = defaultdict(float)
        self.phase_anon_mb: dict[str, float] = defaultdict(float)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            phase = current_phase(self.phase_file)
            pss, anon = tree_mb(self.pid)
            self.peak_mb, self.peak_anon_mb = max(self.peak_mb, pss), max(self.peak_anon_mb, anon)
            self.phase_mb[phase] = max(self.phase_mb[phase], pss)
            self.phase_anon_mb[phase] = max(self.phase_anon_mb[phase], anon)
            self.stop.wait(self.every_s)
