"""Decoding a source: its tasks run in order, in a pool of processes when there are several,
and their parts go to a sink (a SliceBuilder in memory, a StoreWriter on disk).

At most `window` parts are decoded ahead of the sink, so memory stays bounded by a few parts
whatever the size of the source. Workers are spawned (not forked: the parent may hold
threads, e.g. torch's) and compute with one thread each, so that N workers use N cores.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, Protocol

from brainvq.data.builder import SlicePart
from brainvq.progress import progress

# Below this many tasks a pool costs more than it saves (spawning a worker imports the
# decoders: about a second each).
MIN_POOL_TASKS = 16
WINDOW_PER_WORKER = 2  # parts decoded ahead of the sink, per worker


@dataclass(frozen=True)
class DecodePlan:
    """How to decode a source: `decode(task)` for every task, in order.

    decode: a module-level function (the pool pickles it by name) task -> SlicePart.
    tasks: picklable task descriptions, in the order the slices are to be stored.
    notes: notes about the whole source; counted: (note, file) pairs known before decoding.
    splits_present, n_levels: what the source says; None: the splits and levels seen.
    pool_from: the fewest tasks worth a pool (slow tasks, such as registering a volume,
        are worth it sooner than fast ones).
    """

    decode: Callable[[Any], SlicePart]
    tasks: list[Any]
    source: str
    description: str
    notes: tuple[str, ...] = ()
    counted: tuple[tuple[str, str], ...] = ()
    splits_present: tuple[str, ...] | None = None
    n_levels: int | None = None
    pool_from: int = MIN_POOL_TASKS


class Sink(Protocol):
    def note(self, text: str) -> None: ...
    def count(self, text: str, example: str) -> None: ...
    def add_part(self, part: SlicePart) -> None: ...


def default_workers(n_tasks: int, pool_from: int = MIN_POOL_TASKS) -> int:
    """One worker per usable core; none (decode in this process) below `pool_from` tasks."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 0 if n_tasks < pool_from else max(1, min(cores or 1, n_tasks))


def _one_thread_each() -> None:
    """Pool initializer: one compute thread per worker process (set before the decoders'
    libraries are imported, which read these once)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[name] = "1"


def decode_parts(plan: DecodePlan, workers: int) -> Iterator[SlicePart]:
    """The parts of `plan`, in task order; workers <= 1 decodes here, else in a process pool
    with at most WINDOW_PER_WORKER * workers parts ahead. A task's error is raised as is."""
    if workers <= 1 or len(plan.tasks) <= 1:
        for task in plan.tasks:
            yield plan.decode(task)
        return
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=_one_thread_each
    )
    tasks = iter(plan.tasks)
    pending: deque[Future[SlicePart]] = deque()
    try:
        for task in tasks:
            pending.append(pool.submit(plan.decode, task))
            if len(pending) >= WINDOW_PER_WORKER * workers:
                break
        while pending:
            part = pending.popleft().result()
            task = next(tasks, None)
            if task is not None:
                pending.append(pool.submit(plan.decode, task))
            yield part
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def collect(plan: DecodePlan, sink: Sink, workers: int | None = None, show: bool = True) -> None:
    """Decode every task of `plan` into `sink` (notes first, then the parts in order).
    workers: None for default_workers."""
    for text in plan.notes:
        sink.note(text)
    for text, example in plan.counted:
        sink.count(text, example)
    n = len(plan.tasks)
    workers = default_workers(n, plan.pool_from) if workers is None else workers
    for part in progress(decode_parts(plan, workers), n, plan.description, show):
        sink.add_part(part)
