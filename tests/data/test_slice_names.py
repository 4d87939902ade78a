"""One parser of slice names: a file alone and the same file in a folder get the same level."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainvq.data import load_slices
from brainvq.data.slice_names import level_from_name, parse_subject_slice

from .files import slice_pixels, write_png

# every naming scheme a folder of slices is split by subject with
NAMED = [
    "case_441_slice_31.nii.png",
    "sub-01-slice-12.png",
    "sub-02_slice-07.png",
    "brain_Slice3.jpg",
    "case_7_slice_5.png",
]


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("case_441_slice_31.nii.png", ("441", 31)),
        ("/data/keras_png_slices_test/case_441_slice_0.nii.png", ("441", 0)),
        ("sub-01-slice-12.png", ("sub-01", 12)),
        ("sub-01_slice-07.png", ("sub-01", 7)),
        ("brain_slice3.jpg", ("brain", 3)),
        ("sub/case_7_slice_31.png", ("case_7", 31)),
        ("slice_5.png", None),
        ("case_001.png", None),
        ("case_001_slice_x.png", None),
        ("image_0001.png", None),
    ],
)
def test_names_give_subject_and_level(name: str, parsed: tuple[str, int] | None) -> None:
    assert parse_subject_slice(name) == parsed
    assert level_from_name(name) == (None if parsed is None else parsed[1])


def test_a_file_alone_and_in_a_folder_get_the_same_level(tmp_path: Path, cache_dir: Path) -> None:
    for i, name in enumerate(NAMED):
        write_png(tmp_path / "folder" / name, slice_pixels(str(i), 0, 32))
    sl = load_slices(tmp_path / "folder", 16, cache_dir=cache_dir, progress=False)
    got = dict(zip(sl.filename.tolist(), sl.level.tolist(), strict=True))
    assert got == {name: level_from_name(tmp_path / "folder" / name) for name in NAMED}
    assert got["sub-01-slice-12.png"] == 12 and got["case_441_slice_31.nii.png"] == 31


def test_oasis_slices_get_the_level_their_name_gives_alone(
    oasis_tree: Path, cache_dir: Path
) -> None:
    sl = load_slices(oasis_tree, 16, cache_dir=cache_dir, progress=False)
    assert len(sl) > 0
    for filename, level in zip(sl.filename.tolist(), sl.level.tolist(), strict=True):
        assert level_from_name(Path(oasis_tree, filename)) == level
