"""A folder of PNG/JPEG slices without split folders; the stable hash split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from brainvq.data import load_slices
from brainvq.data.splits import assign_splits, stable_unit

from .files import slice_pixels, write_png


def test_names_with_subjects_are_split_by_subject(tmp_path: Path, cache_dir: Path) -> None:
    for s in range(30):
        for k in range(3):
            write_png(tmp_path / "src" / f"sub-{s:02d}_slice-{k}.png", slice_pixels(str(s), k, 64))
    sl = load_slices(tmp_path / "src", 32, cache_dir=cache_dir, progress=False)
    assert len(sl) == 90 and sl.images.shape[1:] == (32, 32)
    for subject in np.unique(sl.subject):
        assert len(set(sl.split[sl.subject == subject])) == 1  # no subject in two splits
    assert sorted(set(sl.level.tolist())) == [0, 1, 2] and sl.n_levels == 3
    assert set(sl.split) == {"train", "validate", "test"}
    assert 0.6 < (sl.split == "train").mean() < 0.95
    assert any("split by subject" in n for n in sl.notes)


def test_names_without_subjects_are_split_by_file_hash(tmp_path: Path, cache_dir: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(
            tmp_path / f"img{i}.jpg"
        )
    sl = load_slices(tmp_path, 16, cache_dir=cache_dir, progress=False)
    assert len(sl) == 40 and (sl.level == -1).all() and sl.n_levels == 0
    expected = assign_splits([f"img{i}.jpg" for i in range(40)])
    assert [expected[f] for f in sl.filename] == sl.split.tolist()
    assert any("stable hash of the file name" in n for n in sl.notes)


def test_split_of_a_key_does_not_depend_on_other_keys() -> None:
    keys = [f"case_{i}" for i in range(200)]
    full = assign_splits(keys)
    part = assign_splits(keys[:50] + ["something_new"])
    assert all(part[k] == full[k] for k in keys[:50])
    counts = {s: sum(v == s for v in full.values()) for s in ("train", "validate", "test")}
    assert 140 <= counts["train"] <= 180 and counts["validate"] > 5 and counts["test"] > 5
    assert stable_unit("abc") == stable_unit("abc") != stable_unit("abd")


def test_at_least_one_key_in_train() -> None:
    # Find keys that all hash outside train, then check one is moved into it.
    outside = [k for k in (f"v{i}" for i in range(200)) if stable_unit(k) >= 0.8][:3]
    assert "train" in assign_splits(outside).values()


def test_colour_and_16_bit_files_are_converted_and_noted(tmp_path: Path, cache_dir: Path) -> None:
    Image.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8)).save(tmp_path / "colour.png")
    Image.fromarray(np.full((32, 32), 3000, dtype=np.uint16)).save(tmp_path / "wide.png")
    Image.fromarray(np.full((32, 32), 50, dtype=np.uint8)).save(tmp_path / "gray.png")
    sl = load_slices(tmp_path, 16, cache_dir=cache_dir, progress=False)
    assert len(sl) == 3
    notes = "\n".join(sl.notes)
    assert "1 file: RGB converted to grayscale" in notes and "colour.png" in notes
    assert "1 file: 16-bit images scaled to 8-bit" in notes and "wide.png" in notes
    assert "gray.png" not in notes
