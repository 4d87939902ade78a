"""The demo cohort from nilearn's MNI152 template: shape, splits, determinism, framing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainvq.data import load_slices
from brainvq.data.demo import build_demo


@pytest.fixture(scope="module")
def cohort():
    return build_demo(size=64, n_levels=6, subjects=(2, 1, 1), seed=3, show_progress=False)


def test_cohort_layout(cohort) -> None:
    assert cohort.images.shape == (24, 64, 64) and cohort.images.dtype == np.uint8
    assert cohort.source == "demo" and cohort.n_levels == 6
    assert sorted(set(cohort.subject)) == ["demo_000", "demo_001", "demo_002", "demo_003"]
    assert cohort.split[cohort.subject == "demo_002"].tolist() == ["validate"] * 6
    assert cohort.split[cohort.subject == "demo_003"].tolist() == ["test"] * 6
    assert cohort.level[cohort.subject == "demo_001"].tolist() == list(range(6))
    assert cohort.filename[0] == "demo_000_slice_0"


def test_framed_like_oasis(cohort) -> None:
    img = cohort.images[3].astype(float)  # a middle slice of demo_000
    assert img[:4].max() < 30 and img[:, :4].max() < 30  # black background at the border
    rows, cols = np.nonzero(img > 40)
    height, width = (rows.max() - rows.min()) / 64, (cols.max() - cols.min()) / 64
    # OASIS: the brain (with its rim) spans ~76% of the width and ~62% of the height,
    # anterior-posterior along the columns.
    assert 0.66 < width < 0.86 and 0.52 < height < 0.72 and width > height
    assert abs(rows.mean() / 64 - 0.5) < 0.08 and abs(cols.mean() / 64 - 0.5) < 0.08


def test_deterministic_for_a_seed(cohort) -> None:
    again = build_demo(size=64, n_levels=6, subjects=(2, 1, 1), seed=3, show_progress=False)
    np.testing.assert_array_equal(cohort.images, again.images)
    other = build_demo(size=64, n_levels=6, subjects=(1, 0, 0), seed=4, show_progress=False)
    assert not np.array_equal(other.images, cohort.images[:6])
    # Subject i depends on (seed, i) only, not on how many subjects the cohort has.
    first = build_demo(size=64, n_levels=6, subjects=(1, 0, 0), seed=3, show_progress=False)
    np.testing.assert_array_equal(first.images, cohort.images[:6])
    assert first.splits_present == ("train",)


def test_subjects_differ(cohort) -> None:
    a, b = cohort.images[:6].astype(float), cohort.images[6:12].astype(float)
    assert np.abs(a - b).mean() > 3


def test_demo_through_load_slices_is_cached(cache_dir: Path) -> None:
    kwargs = dict(cache_dir=cache_dir, n_levels=4, demo_subjects=(1, 1, 1), progress=False)
    first = load_slices("demo", 32, **kwargs)
    assert len(list(cache_dir.glob("demo-*.store"))) == 1
    second = load_slices("demo", 32, **kwargs)
    np.testing.assert_array_equal(first.images, second.images)
    assert second.notes == first.notes and second.splits_present == first.splits_present


def test_bad_subject_counts() -> None:
    with pytest.raises(ValueError, match="demo subjects must be three counts"):
        build_demo(size=32, subjects=(0, 1, 1), show_progress=False)
