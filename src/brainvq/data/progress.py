"""Progress bars for long decoding loops, written to stderr so stdout stays clean."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track

T = TypeVar("T")

_STDERR = Console(stderr=True)


def progress(items: Iterable[T], total: int, description: str, enabled: bool = True) -> Iterator[T]:
    """Iterate over `items`, showing a progress bar on stderr when `enabled`."""
    if not enabled:
        yield from items
        return
    yield from track(items, total=total, description=description, console=_STDERR, transient=True)
