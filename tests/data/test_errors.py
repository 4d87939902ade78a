"""Bad input: one test per case. A clear message naming the path and what was expected, exit 2
from the CLI, and no cache written."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from brainvq.app.cli import main
from brainvq.data import load_slices

from .files import brain_scan, make_oasis_tree, phantom, write_nifti, write_png


def cli_fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run `brainvq data ...`; expect exit 2 and return the one-line error."""
    try:
        code = main(["data", *argv])
    except SystemExit as e:  # refused while parsing the flags (brainvq.app.flags)
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("brainvq data: error: ") and "\n" not in err and "Traceback" not in err
    return err


def inspect_fails(capsys, source: Path | str, cache_dir: Path, *extra: str) -> str:
    err = cli_fails(
        capsys, "inspect", str(source), "--cache-dir", str(cache_dir), "--no-progress", *extra
    )
    assert not cache_dir.exists(), "a failed load must not write the cache"
    return err


def test_missing_path(tmp_path: Path, cache_dir: Path, capsys) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(
        FileNotFoundError, match=r"data source not found: .*nowhere \(expected 'demo', an OASIS"
    ):
        load_slices(missing, cache_dir=cache_dir, progress=False)
    assert "nowhere" in inspect_fails(capsys, missing, cache_dir)


def test_empty_folder(tmp_path: Path, cache_dir: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    err = inspect_fails(capsys, tmp_path / "empty", cache_dir)
    assert "empty: no images or volumes found (the folder is empty)" in err and "expected" in err


def test_oasis_layout_without_split_folders(tmp_path: Path, cache_dir: Path, capsys) -> None:
    data = tmp_path / "keras_png_slices_data"
    write_png(
        data / "keras_png_slices_seg_train" / "seg_001_slice_0.nii.png", np.zeros((8, 8), np.uint8)
    )
    err = inspect_fails(capsys, tmp_path, cache_dir)
    assert "OASIS layout without image split folders (keras_png_slices_seg_train)" in err
    assert "keras_png_slices_train, keras_png_slices_validate, keras_png_slices_test" in err


def test_command_needing_a_missing_split(tmp_path: Path, cache_dir: Path, capsys) -> None:
    make_oasis_tree(tmp_path / "src", splits=("train", "validate"), seg=False)
    out = tmp_path / "grid.png"
    err = cli_fails(
        capsys,
        "preview",
        str(tmp_path / "src"),
        "--out",
        str(out),
        "--split",
        "test",
        "--cache-dir",
        str(cache_dir),
        "--no-progress",
    )
    assert "has no 'test' split (splits present: train, validate)" in err
    assert not out.exists()


def test_truncated_png_names_the_file(oasis_tree: Path, cache_dir: Path, capsys) -> None:
    bad = (
        oasis_tree
        / "keras_png_slices_data"
        / "keras_png_slices_validate"
        / "case_010_slice_1.nii.png"
    )
    bad.write_bytes(bad.read_bytes()[:300])
    err = inspect_fails(capsys, oasis_tree, cache_dir)
    assert (
        "case_010_slice_1.nii.png: cannot decode image" in err and "expected a complete PNG" in err
    )


def test_file_that_is_not_a_zip(tmp_path: Path, cache_dir: Path, capsys) -> None:
    fake = tmp_path / "keras_png_slices_data.zip"
    fake.write_text("this is not a zip")
    err = inspect_fails(capsys, fake, cache_dir)
    assert "keras_png_slices_data.zip: not a readable zip file" in err


def test_zip_without_the_layout(tmp_path: Path, cache_dir: Path, capsys) -> None:
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("photos/cat.png", b"...")
    err = inspect_fails(capsys, path, cache_dir)
    assert "other.zip: the zip holds no OASIS slices; expected the OASIS layout" in err


def test_corrupt_png_inside_a_zip_names_the_member(tmp_path: Path, cache_dir: Path, capsys) -> None:
    path = tmp_path / "keras_png_slices_data.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(
            "keras_png_slices_data/keras_png_slices_train/case_001_slice_0.nii.png",
            b"\x89PNG broken",
        )
    err = inspect_fails(capsys, path, cache_dir)
    assert "keras_png_slices_train/case_001_slice_0.nii.png: cannot decode image" in err


def test_non_image_file_is_skipped_and_reported(tmp_path: Path, cache_dir: Path, capsys) -> None:
    src = tmp_path / "slices"
    for i in range(3):
        write_png(src / f"img{i}.png", np.full((32, 32), 10 * i, dtype=np.uint8))
    (src / "notes.txt").write_text("not an image")
    assert (
        main(
            [
                "data",
                "inspect",
                str(src),
                "--size",
                "32",
                "--cache-dir",
                str(cache_dir),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "not a PNG/JPEG image, skipped" in out and "notes.txt" in out


def test_2d_nifti(tmp_path: Path, cache_dir: Path, capsys) -> None:
    write_nifti(tmp_path / "vols" / "slice.nii", np.ones((16, 16), dtype=np.float32))
    err = inspect_fails(capsys, tmp_path / "vols", cache_dir)
    assert "slice.nii: NIfTI image is 2D (shape (16, 16)); expected a 3D volume" in err


def test_4d_nifti_takes_first_volume_and_says_so(tmp_path: Path, cache_dir: Path, capsys) -> None:
    _, scan = brain_scan(tmp_path / "src" / "t1.nii.gz", voxel_mm=4.0)
    volume = np.asarray(scan.image.dataobj, dtype=np.float32)
    series = np.stack([volume, volume[::-1], volume * 0.5], axis=-1)
    write_nifti(tmp_path / "vols" / "fmri.nii.gz", series, scan.image.affine)
    assert (
        main(
            [
                "data",
                "inspect",
                str(tmp_path / "vols"),
                "--size",
                "32",
                "--n-levels",
                "4",
                "--cache-dir",
                str(cache_dir),
                "--no-progress",
            ]
        )
        == 0
    )
    out = " ".join(capsys.readouterr().out.split())
    assert f"4D image (shape {series.shape}): took the first volume" in out


@pytest.mark.parametrize("size", ["0", "-8", "100", "12"])
def test_size_not_a_positive_multiple_of_8(
    size: str, oasis_tree: Path, cache_dir: Path, capsys
) -> None:
    err = inspect_fails(capsys, oasis_tree, cache_dir, "--size", size)
    assert f"--size: expected a positive multiple of 8, got {size}" in err


def test_unsupported_single_file(tmp_path: Path, cache_dir: Path, capsys) -> None:
    (tmp_path / "table.csv").write_text("a,b\n")
    assert "table.csv: unsupported file" in inspect_fails(capsys, tmp_path / "table.csv", cache_dir)


def test_images_and_volumes_mixed(tmp_path: Path, cache_dir: Path, capsys) -> None:
    write_png(tmp_path / "mix" / "a.png", np.zeros((8, 8), np.uint8))
    write_nifti(tmp_path / "mix" / "b.nii", phantom())
    assert "holds both 2D images (1) and volumes (1" in inspect_fails(
        capsys, tmp_path / "mix", cache_dir
    )
