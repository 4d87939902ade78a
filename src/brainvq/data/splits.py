"""Deterministic train/validate/test assignment by a stable hash of a key (subject, file, volume).

A key's split depends on the key alone (SHA-1, not Python's salted `hash`), so it is the
same on every machine and does not change when other files are added or removed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from brainvq.data.sliceset import SPLITS

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def stable_unit(key: str) -> float:
    """A number in [0, 1) fixed by `key` (first 8 bytes of its SHA-1)."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_splits(
    keys: Sequence[str], fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> dict[str, str]:
    """Map each distinct key to "train", "validate" or "test" by its stable hash.

    With the default fractions a key goes to train with probability 0.8, validate 0.1 and
    test 0.1. If no key lands in train, the key with the smallest hash is moved there, so a
    source always has something to learn from.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(
            f"split fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    distinct = sorted(set(keys))
    units = {k: stable_unit(k) for k in distinct}
    edges = (fractions[0], fractions[0] + fractions[1])
    assigned = {
        k: SPLITS[0] if u < edges[0] else SPLITS[1] if u < edges[1] else SPLITS[2]
        for k, u in units.items()
    }
    if distinct and SPLITS[0] not in assigned.values():
        assigned[min(distinct, key=units.__getitem__)] = SPLITS[0]
    return assigned


def present_splits(splits: Sequence[str]) -> tuple[str, ...]:
    """The splits (in SPLITS order) that occur in `splits`."""
    seen = set(splits)
    return tuple(s for s in SPLITS if s in seen)
