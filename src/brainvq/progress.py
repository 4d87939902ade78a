"""Progress of long steps, readable on a terminal and in a log.

On a terminal (or in a notebook) a step shows a live bar on stderr. Where stderr is not a
terminal (CI, `nohup`, a cluster's job log, `> log.txt 2>&1`), a bar's every refresh would be
kept (carriage returns by the thousand), so a step prints one line when it ends instead:
`<description>: <done>/<total> in <seconds> s`. Lightning's training bar follows the same rule
(brainvq.training.callbacks.EpochLines: one line per epoch in a log). stdout is left to results.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import Progress

T = TypeVar("T")


def _stderr() -> Console:
    return Console(stderr=True)  # built when used: a test or a notebook may swap sys.stderr


def interactive() -> bool:
    """True when progress can be drawn live: stderr is an interactive terminal or a notebook."""
    console = _stderr()
    return console.is_interactive or console.is_jupyter


def log_line(text: str) -> None:
    """One line of progress on stderr (flushed, so a log shows it at once)."""
    print(text, file=sys.stderr, flush=True)


class Bar:
    """A progress bar over `total` steps of one long step (a context manager).

    Live on stderr when `interactive()`; otherwise one line when the block ends without an
    error. enabled=False shows nothing at all."""

    def __init__(self, description: str, total: int, enabled: bool = True) -> None:
        self.description = description
        self.total = total
        self.enabled = enabled
        self.done = 0
        self._live: Progress | None = None
        self._task = None
        self._start = 0.0

    def __enter__(self) -> Bar:
        self._start = time.perf_counter()
        if self.enabled and interactive():
            self._live = Progress(console=_stderr(), transient=True)
            self._live.__enter__()
            self._task = self._live.add_task(self.description, total=self.total)
        return self

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        if self._live is not None:
            self._live.advance(self._task, steps)

    def describe(self, description: str) -> None:
        """Change what the bar says (e.g. a running loss); the last one goes into the line."""
        self.description = description
        if self._live is not None:
            self._live.update(self._task, description=description)

    def __exit__(self, kind, error, traceback) -> None:
        if self._live is not None:
            self._live.__exit__(kind, error, traceback)
        elif self.enabled and kind is None:
            seconds = time.perf_counter() - self._start
            log_line(f"{self.description}: {self.done}/{self.total} in {seconds:.1f} s")


def progress(items: Iterable[T], total: int, description: str, enabled: bool = True) -> Iterator[T]:
    """Iterate over `items` (`total` of them) with a Bar."""
    with Bar(description, total, enabled) as bar:
        for item in items:
            yield item
            bar.advance()
