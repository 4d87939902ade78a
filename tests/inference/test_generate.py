"""Spreading levels over a batch."""

from __future__ import annotations

import numpy as np

from brainvq.inference.generate import spread_levels


def test_spread_levels_are_centred_balanced_and_in_range() -> None:
    assert spread_levels(4, 32).tolist() == [4, 12, 20, 28]
    assert spread_levels(1, 32).tolist() == [16]
    many = spread_levels(256, 32)
    assert np.bincount(many, minlength=32).tolist() == [8] * 32
    assert spread_levels(5, 3).tolist() == [0, 0, 1, 2, 2]
    for n, levels in ((7, 32), (40, 32), (3, 1)):
        got = spread_levels(n, levels)
        assert len(got) == n and got.min() >= 0 and got.max() < levels
        assert np.all(np.diff(got) >= 0)
    assert spread_levels(8, 0) is None
