"""Scans as they come, through the commands on a tiny run: a DICOM series, an MGZ and a NRRD
give the maps of their NIfTI conversion, outputs named after the series or file; the T1 series
of a session is chosen (or `--series` picks one); a BIDS tree is answered subject by subject;
`reconstruct`, `encode` and `data inspect` take them too; every bad input is one line, exit 2,
and nothing written."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from data.files import brain_scan
from data.scan_files import (
    bids_tree,
    write_dicom_series,
    write_itk,
    write_mgz,
    write_nifti,
)

from app.test_anomaly_cli import ALPHA, cli
from brainvq.data.volumes.discovery import find_scans

SERIES = "t1_mprage_sag"


@pytest.fixture(autouse=True)
def _itk_threads() -> Iterator[None]:
    """`--threads` sets SimpleITK's threads for the whole process: put them back."""
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    yield
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


@pytest.fixture
def run(anomaly_tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of the tiny run, its stored calibration left out."""
    copy = tmp_path / "run"
    shutil.copytree(anomaly_tiny_run, copy)
    shutil.rmtree(copy / "anomaly", ignore_errors=True)
    return copy


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """A small synthetic T1 brain (LPS, oblique, anisotropic 4 x 3.5 x 4.5 mm voxels) with
    integer values in [0, 1000]: (data (X, Y, Z) float32, affine)."""
    path, scan = brain_scan(
        tmp_path_factory.mktemp("head") / "h.nii.gz", "LPS", voxel_mm=(4.0, 3.5, 4.5), seed=3
    )
    data = np.asarray(scan.image.dataobj, dtype=np.float32)
    data = np.round(np.clip(data, 0, None) / data.max() * 1000).astype(np.float32)
    return data, scan.image.affine


def write_as(fmt: str, folder: Path, data: np.ndarray, affine: np.ndarray) -> tuple[Path, str]:
    """The image written as `fmt` under folder: (the input path, its scan's expected name)."""
    if fmt == "dicom":
        return write_dicom_series(folder / "session", data, affine, description=SERIES), (
            f"session_s5_{SERIES}"
        )
    if fmt == "mgz":
        return write_mgz(folder / "head.mgz", data, affine), "head"
    return write_itk(folder / "head.nrrd", data, affine), "head"


def anomaly(run: Path, path: Path, out: Path, capsys, *extra) -> tuple[int, str, str]:
    return cli(
        ["anomaly", "--run", run, "--input", path, "--out", out, "--alpha", ALPHA, *extra], capsys
    )


def volume(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(str(path))
    return np.asarray(image.dataobj), image.affine


def scores(out: Path) -> list[str]:
    with open(out / "scores.csv", newline="") as f:
        return [row["score"] for row in csv.DictReader(f)]


@pytest.mark.parametrize("fmt", ["dicom", "mgz", "nrrd"])
def test_a_scan_in_any_format_gives_the_maps_of_its_nifti_conversion(
    run: Path, head, tmp_path: Path, capsys, fmt: str
) -> None:
    data, affine = head
    path, name = write_as(fmt, tmp_path / "in", data, affine)
    # one thread: ITK's threads sum the registration's metric in any order, so two registrations
    # of one volume differ by about 1e-8 mm on several; on one they are equal, and so are the maps
    code, stdout, err = anomaly(run, path, tmp_path / "out", capsys, "--threads", "1")
    assert code == 0, err
    scan = find_scans(path).scans[0].read()
    converted = write_nifti(tmp_path / "conv" / "conv.nii.gz", scan.data, scan.affine)
    code, _, err = anomaly(run, converted, tmp_path / "out_nifti", capsys, "--threads", "1")
    assert code == 0, err
    for what in ("maps", "masks"):
        frame = [np.load(tmp_path / out / "anomaly_maps.npz")[what] for out in ("out", "out_nifti")]
        np.testing.assert_array_equal(*frame)
    assert scores(tmp_path / "out") == scores(tmp_path / "out_nifti")
    for what in ("anomaly", "anomaly_mask", "brain_mask", "reconstruction", "healed"):
        got, got_affine = volume(tmp_path / "out" / f"{name}_{what}.nii.gz")
        want, want_affine = volume(tmp_path / "out_nifti" / f"conv_{what}.nii.gz")
        np.testing.assert_array_equal(got, want, err_msg=what)
        np.testing.assert_array_equal(got_affine, want_affine)
        assert got.shape == data.shape
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["volumes"][0]["name"] == name
    assert (tmp_path / "out" / f"{name}_registration.png").is_file()
    if fmt == "dicom":
        assert f"series 5 '{SERIES}' (" in stdout and "chosen" in stdout


def test_the_t1_series_of_a_session_is_chosen_and_series_picks_another(
    run: Path, head, tmp_path: Path, capsys
) -> None:
    data, affine = head
    session = tmp_path / "session"
    loc = "ORIGINAL\\PRIMARY\\LOCALIZER"
    write_dicom_series(session / "1", data[:, :, 10:13], affine, number=1, image_type=loc)
    write_dicom_series(session / "5", data, affine, number=5, description=SERIES)
    write_dicom_series(session / "7", data, affine, number=7, description="t2_flair_ax")
    code, stdout, err = anomaly(run, session, tmp_path / "out", capsys)
    assert code == 0, err
    assert f"DICOM series 5 '{SERIES}'" in stdout and "chosen: named T1" in stdout
    assert "(localiser)" in stdout
    assert (tmp_path / "out" / f"session_s5_{SERIES}_anomaly.nii.gz").is_file()
    code, _, err = anomaly(run, session, tmp_path / "out7", capsys, "--series", "7")
    assert code == 0, err
    assert (tmp_path / "out7" / "session_s7_t2_flair_ax_anomaly.nii.gz").is_file()


def test_a_bids_tree_is_answered_by_subject_and_session(
    run: Path, head, tmp_path: Path, capsys
) -> None:
    data, affine = head
    t1 = bids_tree(tmp_path / "bids", data, affine)
    code, stdout, err = anomaly(run, tmp_path / "bids", tmp_path / "out", capsys)
    assert code == 0, err
    maps = sorted(p.name for p in (tmp_path / "out").glob("*_anomaly.nii.gz"))
    assert maps == [f"{name}_anomaly.nii.gz" for name in t1]
    with open(tmp_path / "out" / "scores.csv", newline="") as f:
        names = {row["name"].split("#")[0] for row in csv.DictReader(f)}
    assert names == {Path(p).relative_to(tmp_path / "bids").as_posix() for p in t1.values()}
    assert "BIDS tree: 3 T1w images of 2 subjects" in stdout


def test_reconstruct_encode_and_inspect_take_a_dicom_session(
    run: Path, head, tmp_path: Path, capsys
) -> None:
    data, affine = head
    session = tmp_path / "session"
    write_dicom_series(session, data, affine, number=5, description=SERIES)
    write_dicom_series(session, data, affine, number=6, description="T1 MPR repeat", prefix="R")
    out = tmp_path / "recon"
    code, _, err = cli(
        ["reconstruct", "--model", run, "--input", session, "--out", out, "--series", "6"], capsys
    )
    assert code == 0, err
    assert nib.load(str(out / "session_s6_T1_MPR_repeat_reconstruction.nii.gz")).shape == data.shape
    code, _, err = cli(
        [
            "encode",
            "--model",
            run,
            "--input",
            session,
            "--out",
            tmp_path / "codes",
            "--series",
            "5",
        ],
        capsys,
    )
    assert code == 0, err
    assert (tmp_path / "codes" / f"session_s5_{SERIES}_codes.nii.gz").is_file()
    figures = tmp_path / "figures"
    argv = ["data", "inspect", session, "--size", "32", "--figures", figures, "--series", "5"]
    code, stdout, err = cli([*argv, "--no-progress"], capsys)
    assert code == 0, err
    assert (figures / f"session_s5_{SERIES}_registration.png").is_file()


@pytest.mark.parametrize(
    "case", ["two-series", "no-such-series", "localiser", "2d-dicom", "corrupt", "no-t1w", "2d-mgz"]
)
def test_bad_inputs_get_one_line_and_nothing_is_written(
    run: Path, head, tmp_path: Path, capsys, case: str
) -> None:
    data, affine = head
    folder = tmp_path / "in"
    extra: list[str] = []
    if case in ("two-series", "no-such-series"):
        write_dicom_series(folder, data, affine, number=5, description=SERIES)
        write_dicom_series(folder, data, affine, number=8, description="MPRAGE_2", prefix="B")
        path = folder
        if case == "two-series":
            expected = f"2 plausible T1 series, cannot tell which to use: series 5 '{SERIES}'"
        else:
            extra, expected = ["--series", "3"], "--series 3 matches no series"
    elif case == "localiser":
        write_dicom_series(folder, data[:, :, :4], affine, number=1, description="localizer")
        path, expected = folder, "no volume to answer for: series 1 'localizer' (4 slices)"
    elif case == "2d-dicom":
        write_dicom_series(folder, data[:, :, :1], affine, number=2)
        path, expected = folder / "IM0001", "(1 slice): a single 2D image"
    elif case == "corrupt":
        folder.mkdir()
        (folder / "IM1").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 300)
        path, expected = folder, "IM1: cannot read as a DICOM image"
    elif case == "no-t1w":
        bids_tree(folder, data, affine)
        for t1 in folder.rglob("*_T1w.nii.gz"):
            t1.unlink()
        path, expected = folder, "a BIDS tree with no T1w image"
    else:
        path = write_mgz(tmp_path / "flat.mgz", data[:, :, :1], affine)
        expected = "flat.mgz: MGZ image is 2D"
    out = tmp_path / "out"
    code, _, err = anomaly(run, path, out, capsys, *extra)
    assert code == 2 and err.count("\n") == 0 and expected in err, err
    assert not out.exists() or not any(out.iterdir())


def test_calibrate_on_a_healthy_dicom_series_picked_by_series(
    run: Path, head, tmp_path: Path, capsys
) -> None:
    data, affine = head
    session = tmp_path / "controls"
    write_dicom_series(session, data, affine, number=5, description=SERIES)
    write_dicom_series(session, data, affine, number=6, description="T1 MPR repeat", prefix="R")
    argv = ["anomaly", "calibrate", "--run", run, "--alpha", ALPHA]
    code, _, err = cli([*argv, "--healthy", session], capsys)
    assert code == 2 and "2 plausible T1 series" in err and err.count("\n") == 0
    code, _, err = cli([*argv, "--series", "6"], capsys)
    assert code == 2 and "--series 6: goes with --healthy" in err
    code, stdout, err = cli([*argv, "--healthy", session, "--series", "6"], capsys)
    assert code == 0, err
    assert f"healthy scans {session} --series 6 (1 volumes" in stdout
