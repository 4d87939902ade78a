"""The thread policy of inference: how many intra-op threads the samplers run on.

The cached sampler issues thousands of tiny operations per code map (a few small matrix
products per layer per position). For those, handing work to a second thread and waiting at an
OpenMP barrier costs more than it saves: `benchmarks/bench_sample.py --threads` measures it.
So the samplers run on SAMPLER_THREADS threads unless asked otherwise, whatever the training
stages use, and restore the process's setting afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

SAMPLER_THREADS = 1


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the block on `threads` intra-op torch threads (None: leave the setting as it is)."""
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected an integer >= 1 or None, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
