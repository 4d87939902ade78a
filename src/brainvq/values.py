"""One rule for each kind of number brainvq takes, wherever the number comes from: a flag
(brainvq.app.flags), an argument of a function a notebook calls, or a config key
(brainvq.config). Seeds, counts, minutes, rates: each kind is checked the same way everywhere,
finite and in range, and refused in the same words: `<name>: expected <what>, got <value>`.

The bounds are where the libraries underneath stop: a seed beyond 2**32 - 1 is refused by
NumPy's legacy seeding and silently replaced by Lightning's seed_everything; a count beyond
2**31 - 1 overflows torch's int arguments; minutes beyond 1e9 overflow a timedelta budget.

A count whose arrays must be held at once (a batch, the healings of a slice, the samples a
notebook asks for) has a second bound, the machine's: `check_memory` refuses it before any work
when count x the bytes of one item exceeds the memory this process can still take (MemAvailable,
or less under an RLIMIT_AS/RLIMIT_DATA limit), and `check_disk` a count of outputs whose
uncompressed size exceeds the free space of their folder. Both name the flag and the largest
count that fits, computed from the sizes of one item.
"""

from __future__ import annotations

import math
import numbers
import os
import resource
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED_MAX = 2**32 - 1
COUNT_MAX = 2**31 - 1
MINUTES_MAX = 1e9


@dataclass(frozen=True)
class Rule:
    """A kind of number: integer or real, finite, between low and high (each bound included
    unless its `open_` flag says otherwise; None: no bound), a multiple of `multiple_of` when
    given."""

    expected: str  # the words of a refusal: "<name>: expected <expected>, got <value>"
    integer: bool
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    multiple_of: int | None = None

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        kind = numbers.Integral if self.integer else numbers.Real
        if not isinstance(value, kind) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.open_high else value > self.high):
            return False
        return self.multiple_of is None or value % self.multiple_of == 0

    def check(self, name: str, value: Any) -> Any:
        """`value` when the rule accepts it, else ValueError naming `name` and the rule."""
        if not self.accepts(value):
            raise ValueError(f"{name}: expected {self.expected}, got {value!r}")
        return value


SEED = Rule(f"an integer seed in [0, {SEED_MAX}]", integer=True, low=0, high=SEED_MAX)
COUNT = Rule(f"an integer in [1, {COUNT_MAX}]", integer=True, low=1, high=COUNT_MAX)
# the working size of slices: the largest downsampling factor (8) must divide it
SIZE = Rule("a positive multiple of 8", integer=True, low=8, high=COUNT_MAX, multiple_of=8)
INDEX = Rule(f"an integer in [0, {COUNT_MAX}]", integer=True, low=0, high=COUNT_MAX)
MINUTES = Rule(
    f"a number of minutes in (0, {MINUTES_MAX:.0f}]",
    integer=False,
    low=0,
    high=MINUTES_MAX,
    open_low=True,
)
MINUTES_OR_ZERO = Rule(
    f"a number of minutes in [0, {MINUTES_MAX:.0f}]", integer=False, low=0, high=MINUTES_MAX
)
RATE = Rule("a number in (0, 1)", integer=False, low=0, high=1, open_low=True, open_high=True)
SHARE = Rule("a number in [0, 1)", integer=False, low=0, high=1, open_high=True)
POSITIVE = Rule("a finite number > 0", integer=False, low=0, open_low=True)


def physical_memory() -> int:
    """Bytes of memory the machine has (0 where it cannot be read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


# The healings of a slice are made at once (brainvq.inference.healing): each holds at least its
# healed image and residual map (uint8 and float32 a pixel) and, per code, the healed and input
# codes and the uniform (8 bytes each), the NLL (4) and the resampled flag (1). At the smallest
# working size (SIZE: 8x8, one code at downsampling 8) that is HEAL_BYTES_MIN, so no more
# healings than the machine's memory holds at that size can ever be made.
HEAL_BYTES_MIN = int(SIZE.low) ** 2 * (1 + 4) + (8 + 8 + 8 + 4 + 1)
HEAL_MAX = max(1, min(COUNT_MAX, physical_memory() // HEAL_BYTES_MIN or COUNT_MAX))
HEALINGS = Rule(
    f"an integer in [1, {HEAL_MAX}] (no more healings of a slice fit in this machine's memory, "
    f"at {HEAL_BYTES_MIN} bytes each at the least)",
    integer=True,
    low=1,
    high=HEAL_MAX,
)

# config keys whose kind their name says (brainvq.config checks them in every section)
KEY_RULES = {"seed": SEED, "max_minutes": MINUTES}


def _meminfo_kb(path: str, key: str) -> int | None:
    try:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory() -> int:
    """Bytes this process can still take: the kernel's MemAvailable, or less where an
    RLIMIT_AS / RLIMIT_DATA limit leaves less above what the process maps already."""
    kb = _meminfo_kb("/proc/meminfo", "MemAvailable")
    if kb is None:  # not Linux: the physical pages free
        try:
            kb = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1024
        except (ValueError, OSError, AttributeError):
            return 2**62
    free = kb * 1024
    for limit, used_key in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(limit)[0]
        used = _meminfo_kb("/proc/self/status", used_key)
        if soft != resource.RLIM_INFINITY and used is not None:
            free = min(free, max(0, soft - used * 1024))
    return free


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} PB"


def check_memory(name: str, count: int, item_bytes: int, what: str) -> int:
    """`count` when count items of `item_bytes` each fit in `available_memory()`, else
    ValueError in one line naming `name`, the largest count that fits and why; `what` says what
    one item is ("one sample's code map and image")."""
    free = available_memory()
    most = free // max(1, int(item_bytes))
    if count > most:
        raise ValueError(
            f"{name}: expected at most {most:,} here, got {count:,} ({what}: "
            f"{_size(item_bytes)} each, {_size(count * item_bytes)} in all, {_size(free)} of "
            "memory available)"
        )
    return count


def check_disk(name: str, count: int, item_bytes: int, folder: Path | str, what: str) -> int:
    """`count` when count outputs of up to `item_bytes` each (uncompressed) fit in the free
    space of `folder` (or of its nearest existing parent), else ValueError in one line naming
    `name` and the largest count that fits."""
    where = Path(folder).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    most = free // max(1, int(item_bytes))
    if count > most:
        raise ValueError(
            f"{name}: expected at most {most:,} here, got {count:,} ({what}: up to "
            f"{_size(item_bytes)} each, {_size(count * item_bytes)} in all, {_size(free)} free "
            f"at {where})"
        )
    return count
