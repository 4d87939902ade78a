"""Spreading levels over a batch, reading a level from a file name, checking a level."""

from __future__ import annotations

import numpy as np
import pytest

from brainvq.inference.generate import level_from_name, spread_levels


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


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("case_001_slice_12.nii.png", 12),
        ("/data/keras_png_slices_test/case_441_slice_0.nii.png", 0),
        ("sub/case_7_slice_31.png", 31),
        ("slice_5.png", None),
        ("case_001.png", None),
        ("case_001_slice_x.png", None),
    ],
)
def test_level_from_name(name: str, level: int | None) -> None:
    assert level_from_name(name) == level
