"""The thread policy of inference: how many intra-op threads the samplers run on.

The cached sampler issues thousands of small operations per code map, on (n, channels)
tensors for n maps drawn together. For a few maps, handing work to a second thread and waiting
at an OpenMP barrier costs more than it saves; for many maps the products are big enough to
share. `benchmarks/bench_sample.py --threads` measures both (docs/results.md, "Speed of the
parts"); the policy below follows those measurements, and an explicit thread count always wins.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

PARALLEL_FROM = 32  # maps drawn together from which the samplers use every thread


def sampler_threads(n: int, threads: int | None = None) -> int:
    """Intra-op threads for drawing n maps at once: `threads` if given, else 1 below
    PARALLEL_FROM maps and the process's setting (one per core by default) from there."""
    if threads is not None:
        return threads
    return 1 if n < PARALLEL_FROM else torch.get_num_threads()


@contextmanager
def intra_op_threads(threads: int) -> Iterator[None]:
    """Run the block on `threads` intra-op torch threads, then restore the setting."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected an integer >= 1, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
