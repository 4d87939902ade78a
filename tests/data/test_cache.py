"""The slice cache: hits, invalidation when a file changes, no pickle, where it lives (its
slice stores themselves: tests/data/test_store.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from brainvq.data import load_slices
from brainvq.data.cache import SliceCache, default_cache_dir

from .files import slice_pixels, write_png


def test_second_load_is_a_cache_hit(oasis_tree: Path, cache_dir: Path) -> None:
    t0 = time.perf_counter()
    first = load_slices(oasis_tree, 128, cache_dir=cache_dir, progress=False)
    t_first = time.perf_counter() - t0
    stores = sorted(cache_dir.glob("oasis-*.store"))
    assert len(stores) == 1 and (stores[0] / "store.json").is_file()
    assert not list(cache_dir.glob("*.tmp")) and not list(cache_dir.glob(".*"))
    stamp = (stores[0] / "images.npy").stat().st_mtime_ns
    t0 = time.perf_counter()
    second = load_slices(oasis_tree, 128, cache_dir=cache_dir, progress=False)
    t_second = time.perf_counter() - t0
    assert (stores[0] / "images.npy").stat().st_mtime_ns == stamp  # read, not rewritten
    for name in ("images", "split", "subject", "level", "filename"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert (second.notes, second.splits_present, second.n_levels, second.source) == (
        first.notes,
        first.splits_present,
        first.n_levels,
        first.source,
    )
    assert t_second < t_first
    description = json.loads((stores[0] / "store.json").read_text(encoding="utf-8"))
    assert description["n_images"] == len(first) and description["size"] == 128


def test_changed_file_invalidates(oasis_tree: Path, cache_dir: Path) -> None:
    first = load_slices(oasis_tree, 64, cache_dir=cache_dir, progress=False)
    target = (
        oasis_tree / "keras_png_slices_data" / "keras_png_slices_train" / "case_001_slice_0.nii.png"
    )
    write_png(target, np.full((256, 256), 200, dtype=np.uint8))
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = load_slices(oasis_tree, 64, cache_dir=cache_dir, progress=False)
    i = int(np.nonzero(second.filename == "keras_png_slices_train/case_001_slice_0.nii.png")[0][0])
    assert (second.images[i] == 200).all() and not (first.images[i] == 200).all()
    assert len(list(cache_dir.glob("oasis-*.store"))) == 2


def test_added_file_and_other_size_are_new_entries(oasis_tree: Path, cache_dir: Path) -> None:
    n = len(load_slices(oasis_tree, 64, cache_dir=cache_dir, progress=False))
    write_png(
        oasis_tree / "keras_png_slices_data" / "keras_png_slices_test" / "case_021_slice_0.nii.png",
        slice_pixels("21", 0),
    )
    assert len(load_slices(oasis_tree, 64, cache_dir=cache_dir, progress=False)) == n + 1
    assert load_slices(oasis_tree, 32, cache_dir=cache_dir, progress=False).size == 32
    assert len(list(cache_dir.glob("oasis-*.store"))) == 3


def test_entries_load_without_pickle(oasis_tree: Path, cache_dir: Path) -> None:
    load_slices(oasis_tree, 64, cache_dir=cache_dir, progress=False)
    (store,) = cache_dir.glob("oasis-*.store")
    assert np.load(store / "images.npy", allow_pickle=False).dtype == np.uint8
    assert np.load(store / "subject.npy", allow_pickle=False).dtype.kind == "U"


def test_corrupt_entry_is_rebuilt(oasis_tree: Path, cache_dir: Path) -> None:
    first = load_slices(oasis_tree, 64, cache_dir=cache_dir, progress=False)
    (store,) = cache_dir.glob("oasis-*.store")
    (store / "store.json").write_bytes(b"garbage")
    again = load_slices(oasis_tree, 64, cache_dir=cache_dir, progress=False)
    np.testing.assert_array_equal(first.images, again.images)


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    assert SliceCache().directory == tmp_path / "env-cache"
    monkeypatch.delenv("BRAINVQ_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "brainvq"


def test_cache_dir_that_is_a_file(tmp_path: Path, oasis_tree: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="not_a_dir"):
        load_slices(oasis_tree, 64, cache_dir=blocker, progress=False)
