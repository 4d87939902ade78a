"""One rule for each kind of number brainvq takes, wherever the number comes from: a flag
(brainvq.app.flags), an argument of a function a notebook calls, or a config key
(brainvq.config). Seeds, counts, minutes, rates: each kind is checked the same way everywhere,
finite and in range, and refused in the same words: `<name>: expected <what>, got <value>`.

The bounds are where the libraries underneath stop: a seed beyond 2**32 - 1 is refused by
NumPy's legacy seeding and silently replaced by Lightning's seed_everything; a count beyond
2**31 - 1 overflows torch's int arguments; minutes beyond 1e9 overflow a timedelta budget.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
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

# config keys whose kind their name says (brainvq.config checks them in every section)
KEY_RULES = {"seed": SEED, "max_minutes": MINUTES}
