"""The OASIS layout as a folder tree (at any depth) and as the course zip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainvq.data import load_slices
from brainvq.data.imaging import resize_square

from .files import OASIS_SLICES, OASIS_SUBJECTS, make_oasis_tree, slice_pixels, write_png


def check_oasis(s, size: int) -> None:
    n_train = len(OASIS_SUBJECTS["train"]) * OASIS_SLICES
    assert len(s) == n_train + 2 * OASIS_SLICES
    assert s.images.shape[1:] == (size, size) and s.images.dtype == np.uint8
    assert s.splits_present == ("train", "validate", "test")
    assert set(s.subject[s.split == "train"]) == set(OASIS_SUBJECTS["train"])
    assert set(s.subject[s.split == "validate"]) == {"010"}
    assert sorted(s.level[s.subject == "002"]) == list(range(OASIS_SLICES))
    assert s.n_levels == OASIS_SLICES
    i = int(np.nonzero((s.subject == "003") & (s.level == 2))[0][0])
    assert s.filename[i] == "keras_png_slices_train/case_003_slice_2.nii.png"
    np.testing.assert_array_equal(s.images[i], resize_square(slice_pixels("003", 2), size))
    assert any("segmentation folders skipped" in n for n in s.notes)


def test_tree_found_below_the_given_folder(oasis_tree: Path, cache_dir: Path) -> None:
    s = load_slices(oasis_tree, 128, cache_dir=cache_dir, progress=False)
    check_oasis(s, 128)
    assert s.source.endswith("keras_png_slices_data")


def test_zip_read_without_extracting(oasis_zip: Path, cache_dir: Path) -> None:
    s = load_slices(oasis_zip, 64, cache_dir=cache_dir, progress=False)
    check_oasis(s, 64)
    assert sorted(p.name for p in oasis_zip.parent.iterdir() if p.is_dir()) == ["cache", "zip_src"]


def test_tree_and_zip_give_the_same_slices(oasis_zip: Path, cache_dir: Path) -> None:
    from_zip = load_slices(oasis_zip, 128, cache_dir=cache_dir, progress=False)
    from_tree = load_slices(oasis_zip.parent / "zip_src", 128, cache_dir=cache_dir, progress=False)
    np.testing.assert_array_equal(from_zip.images, from_tree.images)
    np.testing.assert_array_equal(from_zip.filename, from_tree.filename)


def test_missing_split_loads_the_rest_and_require_split_names_it(
    tmp_path: Path, cache_dir: Path
) -> None:
    make_oasis_tree(tmp_path / "src", splits=("train", "validate"), seg=False)
    s = load_slices(tmp_path / "src", 128, cache_dir=cache_dir, progress=False)
    assert s.splits_present == ("train", "validate")
    assert len(s.require_split("validate")) == OASIS_SLICES
    with pytest.raises(ValueError, match=r"no 'test' split \(splits present: train, validate\)"):
        s.require_split("test")


def test_non_image_and_misnamed_files_are_skipped_with_notes(
    oasis_tree: Path, cache_dir: Path
) -> None:
    train = oasis_tree / "keras_png_slices_data" / "keras_png_slices_train"
    (train / "README.txt").write_text("not an image")
    write_png(train / "scan.png", slice_pixels("001", 0))
    s = load_slices(oasis_tree, 128, cache_dir=cache_dir, progress=False)
    assert len(s) == (len(OASIS_SUBJECTS["train"]) + 2) * OASIS_SLICES
    notes = "\n".join(s.notes)
    assert "not an image file, skipped (e.g. keras_png_slices_train/README.txt)" in notes
    assert "keras_png_slices_train/scan.png" in notes and "case_<subject>_slice_<k>" in notes
