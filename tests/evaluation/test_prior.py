"""The prior's evaluation helpers: the histogram floor and the reference sets."""

from __future__ import annotations

import numpy as np
import pytest

from brainvq.data.sliceset import SliceSet
from brainvq.evaluation.prior import histogram_floor_codes, reference_sets


def cohort(splits: dict[str, list[str]], per_subject: int = 4) -> SliceSet:
    split, subject = [], []
    for name, subjects in splits.items():
        for s in subjects:
            split += [name] * per_subject
            subject += [s] * per_subject
    n = len(split)
    return SliceSet(
        images=np.zeros((n, 8, 8), np.uint8),
        split=np.array(split),
        subject=np.array(subject),
        level=np.tile(np.arange(per_subject, dtype=np.int16), n // per_subject),
        filename=np.array([f"f{i}.png" for i in range(n)]),
        source="test",
        splits_present=tuple(splits),
        n_levels=per_subject,
    )


def test_histogram_floor_follows_the_training_histogram() -> None:
    train = np.zeros((50, 4, 4), dtype=np.int16)
    train[:, :2] = 3  # code 3 half the time, code 0 the other half, codes 1, 2, 4.. never
    floor = histogram_floor_codes(train, 8, 400, seed=0)
    assert floor.shape == (400, 4, 4)
    counts = np.bincount(floor.ravel(), minlength=8)
    assert set(np.flatnonzero(counts)) == {0, 3}
    assert abs(counts[3] / counts.sum() - 0.5) < 0.03
    np.testing.assert_array_equal(floor, histogram_floor_codes(train, 8, 400, seed=0))


def test_references_use_the_test_split_when_there_is_one() -> None:
    s = cohort({"train": ["a"], "validate": ["v1", "v2"], "test": ["t1", "t2", "t3"]})
    refs = reference_sets(s, n=100, seed=0)
    assert refs.split == "test"
    assert set(refs.test.subject) == {"t1", "t2", "t3"} and set(refs.validate.subject) == {
        "v1",
        "v2",
    }
    small = reference_sets(s, n=5, seed=0)
    assert len(small.test) == 5 and len(small.validate) == 5  # equal-sized sets for the FD


def test_without_a_test_split_the_validate_subjects_are_halved() -> None:
    s = cohort({"train": ["a"], "validate": ["v1", "v2", "v3", "v4", "v5"]})
    refs = reference_sets(s, n=100, seed=0)
    assert refs.split == "validate"
    assert set(refs.validate.subject) == {"v1", "v2"}  # the first half: the ceiling
    assert set(refs.test.subject) == {"v3", "v4", "v5"}  # the second: the reference
    with pytest.raises(ValueError, match="only one validate subject"):
        reference_sets(cohort({"train": ["a"], "validate": ["v1"]}), n=10, seed=0)
