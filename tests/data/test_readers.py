"""Every way a scan arrives gives the same scan: one image written as NIfTI, MGZ, NRRD, NHDR,
MHA, MHD and a DICOM series (real files, SimpleITK and nibabel writing them) reads back as the
same data and affine; DICOM series are found, chosen and refused as brainvq.data.volumes says;
BIDS trees give their T1w images named by subject and session."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from brainvq.data.volumes.discovery import find_scans, read_volume_file
from brainvq.data.volumes.files import safe_name

from .scan_files import (
    bids_tree,
    integer_volume,
    itk_image,
    oblique_affine,
    write_dicom_series,
    write_dicomdir,
    write_itk,
    write_mgz,
    write_nifti,
)

# DICOM keeps positions and directions as decimal strings (10 significant digits here), MGZ
# its geometry in float32: a voxel moves by less than this (mm) across the field of view
AFFINE_MM = 1e-4
SERIES = "t1_mprage_sag"


@pytest.fixture(scope="module")
def image() -> tuple[np.ndarray, np.ndarray]:
    """(data (40, 48, 36) integer-valued float32, an oblique LPS-like affine, voxels
    1.2 x 1.0 x 2.5 mm)."""
    return integer_volume(), oblique_affine()


def only_scan(path: Path, series: str | None = None):
    found = find_scans(path, series)
    assert found is not None and len(found.scans) == 1, found
    return found.scans[0]


def assert_same_image(scan, data: np.ndarray, affine: np.ndarray) -> None:
    """Equal data (the fixture is integer-valued, so DICOM's int16 keeps it exactly) and an
    affine within AFFINE_MM at the far corner of the field of view."""
    np.testing.assert_array_equal(scan.data, data)
    corner = np.array([*scan.data.shape, 1.0])
    assert np.abs((scan.affine - affine) @ corner).max() < AFFINE_MM
    assert np.abs(scan.affine - affine).max() < AFFINE_MM


@pytest.mark.parametrize("suffix", [".mgz", ".mgh", ".nrrd", ".nhdr", ".mha", ".mhd", "dicom"])
def test_every_format_reads_as_the_nifti_of_the_same_image(
    tmp_path: Path, image, suffix: str
) -> None:
    data, affine = image
    nifti = read_volume_file(write_nifti(tmp_path / "x.nii.gz", data, affine))
    if suffix == "dicom":
        path = write_dicom_series(tmp_path / "session", data, affine, description=SERIES)
        expected_name = f"session_s5_{SERIES}"
    elif suffix in (".mgz", ".mgh"):
        path, expected_name = write_mgz(tmp_path / f"x{suffix}", data, affine), "x"
    else:
        path, expected_name = write_itk(tmp_path / f"x{suffix}", data, affine), "x"
    scan = only_scan(path).read()
    assert scan.name == expected_name
    assert_same_image(scan, nifti.data, nifti.affine)
    # x fastest in memory, as nibabel's arrays of a NIfTI: the registration sums in memory order
    assert scan.data.flags["F_CONTIGUOUS"] and nifti.data.flags["F_CONTIGUOUS"]
    assert int(scan.header["qform_code"]) == 1 and int(scan.header["sform_code"]) == 1
    # its NIfTI conversion (data and affine as written by nibabel) reads back bit for bit
    converted = read_volume_file(write_nifti(tmp_path / "conv.nii.gz", scan.data, scan.affine))
    np.testing.assert_array_equal(converted.data, scan.data)
    np.testing.assert_array_equal(converted.affine, scan.affine)


def test_a_left_handed_grid_as_dicom_is_the_same_image_in_the_scanner(tmp_path: Path) -> None:
    """A radiological (LAS-like) NIfTI cannot be a DICOM stack in its own voxel order: the
    series is written slice by slice along the normal, so its voxels come back with z reversed,
    and the same world image."""
    data, affine = integer_volume(), oblique_affine(flip=(-1, 1, 1))
    nifti = read_volume_file(write_nifti(tmp_path / "las.nii.gz", data, affine))
    flip = np.diag([1.0, 1.0, -1.0, 1.0])
    flip[2, 3] = data.shape[2] - 1
    series = write_dicom_series(tmp_path / "las", data[:, :, ::-1], affine @ flip)
    scan = only_scan(series).read()
    canonical = [nib.as_closest_canonical(nib.Nifti1Image(s.data, s.affine)) for s in (scan, nifti)]
    np.testing.assert_array_equal(canonical[0].get_fdata(), canonical[1].get_fdata())
    assert np.abs(canonical[0].affine - canonical[1].affine).max() < AFFINE_MM


def test_a_multiframe_dicom_file_is_a_volume(tmp_path: Path, image) -> None:
    data, affine = image
    folder = tmp_path / "mf"
    folder.mkdir()
    volume = sitk.Cast(itk_image(data, affine), sitk.sitkUInt16)
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.SetFileName(str(folder / "volume"))  # no extension: found by its DICM magic
    writer.Execute(volume)
    scan = only_scan(folder).read()
    np.testing.assert_array_equal(scan.data, data)
    # GDCM keeps a multi-frame secondary capture's origin and spacing, not its direction
    assert np.allclose(np.linalg.norm(scan.affine[:3, :3], axis=0), [1.2, 1.0, 2.5], atol=1e-3)


def test_4d_inputs_give_their_first_volume_with_a_note(tmp_path: Path, image) -> None:
    data, affine = image
    mgz = read_volume_file(write_mgz(tmp_path / "t.mgz", np.stack([data, data + 1], -1), affine))
    assert mgz.data.shape == data.shape and "took the first volume" in mgz.notes[0]
    np.testing.assert_array_equal(mgz.data, data)
    folder = tmp_path / "dwi"
    uid = "1.2.826.0.1.3680043.2.1125.4.4"
    write_dicom_series(folder, data, affine, uid=uid, prefix="A")
    write_dicom_series(folder, data + 7, affine, uid=uid, prefix="B", first_instance=100)
    scan = only_scan(folder).read()
    np.testing.assert_array_equal(scan.data, data)
    assert any("2 volumes at each of the series' 36 positions" in n for n in scan.notes)


def test_the_t1_is_chosen_among_a_sessions_series_and_said_so(tmp_path: Path, image) -> None:
    data, affine = image
    session = tmp_path / "session"
    write_dicom_series(
        session / "loc",
        data[:, :, 15:18],
        affine,
        number=1,
        description="AAHead_Scout",
        image_type="ORIGINAL\\PRIMARY\\LOCALIZER",
    )
    write_dicom_series(session / "t1", data, affine, number=5, description="t1_mprage_sag")
    write_dicom_series(
        session / "t2",
        data,
        affine,
        number=7,
        description="t2_tse_tra",
        acquisition="2D",
        tr_ms=5000,
        te_ms=90,
    )
    (session / "README.txt").write_text("exported by the scanner")
    found = find_scans(session)
    assert [s.name for s in found.scans] == ["session_s5_t1_mprage_sag"]
    note = found.scans[0].notes[0]
    assert "series 5 't1_mprage_sag' (36 slices) chosen: named T1" in note
    assert "series 1 'AAHead_Scout' (3 slices) (localiser)" in note
    assert "series 7 't2_tse_tra' (36 slices) (not named T1)" in note
    assert found.left_out == ["README.txt"] and "README.txt" in found.notes[-1]
    assert "chosen: named T1" in found.scans[0].read().notes[0]


def test_a_3d_acquisition_then_the_shortest_tr_and_te_decide_between_unnamed_series(
    tmp_path: Path, image
) -> None:
    data, affine = image
    write_dicom_series(tmp_path / "a", data, affine, number=3, description="ax", acquisition="2D")
    write_dicom_series(tmp_path / "a", data, affine, number=4, description="sag", prefix="S")
    assert only_scan(tmp_path / "a").name == "a_s4_sag"
    write_dicom_series(tmp_path / "b", data, affine, number=3, description="x", tr_ms=8.1)
    write_dicom_series(tmp_path / "b", data, affine, number=4, description="y", prefix="S")
    chosen = only_scan(tmp_path / "b")
    assert chosen.name == "b_s3_x" and "the shortest TR and TE" in chosen.notes[0]


def test_two_plausible_series_are_listed_and_series_picks_one(tmp_path: Path, image) -> None:
    data, affine = image
    session = tmp_path / "s"
    write_dicom_series(session, data, affine, number=5, description="t1_mprage_sag")
    write_dicom_series(
        session, data + 3, affine, number=9, description="T1 MPRAGE repeat", prefix="R"
    )
    with pytest.raises(ValueError) as e:
        find_scans(session)
    message = str(e.value)
    assert "\n" not in message and "2 plausible T1 series" in message
    assert "series 5 't1_mprage_sag' (36 slices)" in message
    assert "series 9 'T1 MPRAGE repeat' (36 slices)" in message and "--series" in message
    picked = only_scan(session, "9")
    assert picked.name == "s_s9_T1_MPRAGE_repeat" and "--series 9" in picked.notes[0]
    np.testing.assert_array_equal(picked.read().data, data + 3)
    by_uid = only_scan(session, picked.series.uid)
    assert by_uid.series == picked.series
    with pytest.raises(ValueError, match=r"--series 4 matches no series .*series 5 .*series 9"):
        find_scans(session, "4")


@pytest.mark.parametrize("case", ["localiser", "2d", "corrupt", "corrupt-slice", "no-dicom"])
def test_bad_dicom_inputs_name_what_is_wrong(tmp_path: Path, image, case: str) -> None:
    data, affine = image
    folder = tmp_path / "in"
    if case == "localiser":
        write_dicom_series(folder, data[:, :, :3], affine, number=1, description="localizer")
        expected = "no volume to answer for: series 1 'localizer' (3 slices): localiser"
    elif case == "2d":
        write_dicom_series(folder, data[:, :, :1], affine, number=2, description="t1")
        folder = folder / "IM0001"
        expected = "no volume to answer for: series 2 't1' (1 slice): a single 2D image"
    elif case == "corrupt":
        folder.mkdir()
        (folder / "x.dcm").write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 3)
        expected = "x.dcm: cannot read as a DICOM image"
    elif case == "corrupt-slice":
        write_dicom_series(folder, data, affine)
        cut = folder / "IM0010"
        cut.write_bytes(cut.read_bytes()[:600])
        expected = "slices are not evenly spaced (steps of 2.50 to 5.00 mm; 1 DICOM files"
    else:
        write_nifti(folder / "a.nii.gz", data, affine)
        with pytest.raises(ValueError, match="--series 3: goes with a DICOM input"):
            find_scans(folder, "3")
        return
    with pytest.raises(ValueError) as e:
        found = find_scans(folder)
        found.scans[0].read()
    assert expected in str(e.value) and "\n" not in str(e.value)
    if case == "corrupt-slice":
        assert "IM0010: Cannot read requested file" in str(e.value)


def test_a_dicomdir_a_single_file_and_nested_studies(tmp_path: Path, image) -> None:
    data, affine = image
    root = tmp_path / "export"
    write_dicom_series(root / "DICOM" / "S1", data, affine, number=3, description="T1w 3D")
    write_dicomdir(root)
    by_index = find_scans(root / "DICOMDIR")
    assert [s.name for s in by_index.scans] == ["export_s3_T1w_3D"]
    one_file = only_scan(root / "DICOM" / "S1" / "IM0007")
    assert one_file.series == by_index.scans[0].series
    cohort = tmp_path / "cohort"
    for i, subject in enumerate(("p1", "p2")):
        write_dicom_series(
            cohort / subject / "t1", data, affine, study=f"1.2.3.{i}", description="t1_mpr"
        )
    found = find_scans(cohort)
    assert [s.name for s in found.scans] == ["p1_s5_t1_mpr", "p2_s5_t1_mpr"]


def test_a_folder_of_mixed_files_gives_every_scan_with_unique_names(tmp_path: Path, image) -> None:
    data, affine = image
    root = tmp_path / "mixed"
    write_nifti(root / "a" / "s.nii.gz", data, affine)
    write_nifti(root / "b" / "s.nii.gz", data, affine)
    write_mgz(root / "brain.mgz", data, affine)
    write_itk(root / "head.nhdr", data, affine)  # and its head.raw.gz, part of it
    write_dicom_series(root / "dcm", data, affine, description="MPRAGE")
    (root / "notes.txt").write_text("x")
    found = find_scans(root)
    assert sorted(s.name for s in found.scans) == ["b_s", "brain", "head", "mixed_s5_MPRAGE", "s"]
    assert found.left_out == ["notes.txt"]
    assert find_scans(tmp_path / "mixed" / "notes.txt") is None
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "README").write_text("x")
    assert find_scans(tmp_path / "text") is None


def test_a_bids_tree_gives_its_t1w_images_by_subject_and_session(tmp_path: Path, image) -> None:
    data, affine = image
    t1 = bids_tree(tmp_path / "bids", data, affine)
    found = find_scans(tmp_path / "bids")
    assert (
        [s.name for s in found.scans]
        == list(t1)
        == [
            "sub-01_T1w",
            "sub-02_ses-01_T1w",
            "sub-02_ses-02_T1w",
        ]
    )
    assert [s.group for s in found.scans] == ["sub-01", "sub-02", "sub-02"]
    assert "participants.tsv" in found.left_out and "BIDS tree: 3 T1w images" in found.notes[0]
    assert not any("derivatives" in s.rel or "bold" in s.rel for s in found.scans)
    t2 = find_scans(tmp_path / "bids", bids_suffixes=("T2w",))
    assert [s.name for s in t2.scans] == ["sub-01_T2w"]
    for path in t1.values():
        path.unlink()
    with pytest.raises(ValueError, match=r"bids: a BIDS tree with no T1w image"):
        find_scans(tmp_path / "bids")


@pytest.mark.parametrize(
    "suffix, expected",
    [(".mgz", "MGZ image is 2D"), (".nrrd", "NRRD image is 2D"), (".mha", "MetaImage image is 2D")],
)
def test_a_2d_volume_file_is_refused(tmp_path: Path, suffix: str, expected: str) -> None:
    flat = np.ones((40, 40, 1), np.float32)
    flat[5:9] = 2
    path = tmp_path / f"flat{suffix}"
    if suffix == ".mgz":
        write_mgz(path, flat, np.eye(4))
    else:
        sitk.WriteImage(sitk.GetImageFromArray(flat[:, :, 0]), str(path))
    with pytest.raises(ValueError, match=expected):
        read_volume_file(path)


def test_unreadable_volume_files_are_named(tmp_path: Path) -> None:
    for name in ("bad.mgz", "bad.nrrd"):
        (tmp_path / name).write_bytes(b"not a volume")
        with pytest.raises(ValueError, match=rf"{name}: cannot read as"):
            read_volume_file(tmp_path / name)


def test_safe_names() -> None:
    assert safe_name("T1 MPRAGE (sag) / 1mm*") == "T1_MPRAGE_sag_1mm"
    assert safe_name("***") == "scan"


def test_removed_dicom_files_of_a_copied_series_fail_cleanly(tmp_path: Path, image) -> None:
    """A series whose files were partly removed after discovery is refused when read."""
    data, affine = image
    folder = write_dicom_series(tmp_path / "s", data, affine)
    record = only_scan(folder)
    shutil.rmtree(folder)
    with pytest.raises(ValueError, match="IM0001: cannot read as a DICOM image"):
        record.read()


def test_a_folder_of_mgz_and_dicom_trains_like_nifti_volumes(tmp_path: Path, cache_dir) -> None:
    """Training data from other formats: each scan registered and sliced on the frame, its
    slices named after it."""
    from brainvq.data import load_slices

    from .files import brain_scan

    cohort = tmp_path / "cohort"
    _, a = brain_scan(tmp_path / "a.nii.gz", "RAS", seed=1, voxel_mm=4.0)
    _, b = brain_scan(tmp_path / "b.nii.gz", "LPS", seed=2, voxel_mm=4.0)
    write_mgz(cohort / "a.mgz", np.asarray(a.image.dataobj, np.float32), a.image.affine)
    b_data = np.round(np.asarray(b.image.dataobj, np.float32))
    write_dicom_series(cohort / "b" / "dicom", b_data, b.image.affine, description="MPRAGE")
    slices = load_slices(cohort, 32, cache_dir=cache_dir, progress=False)
    assert set(slices.subject) == {"a", "cohort_s5_MPRAGE"}
    assert "a.mgz#level5" in set(slices.filename)
    assert "cohort_s5_MPRAGE#level5" in set(slices.filename)
    assert slices.level.max() == 31


def test_a_bids_subjects_sessions_stay_in_one_split(tmp_path: Path, image) -> None:
    from brainvq.data.loader import resolve_source

    data, affine = image
    root = tmp_path / "bids"
    bids_tree(root, data, affine)
    for sub in range(3, 12):
        for ses in (1, 2):
            path = (
                root / f"sub-{sub:02d}" / f"ses-{ses}" / "anat" / f"sub-{sub:02d}_ses-{ses}_T1w.nii"
            )
            write_nifti(path, data[::4, ::4, ::4], affine)
    source = resolve_source(root)
    split_of: dict[str, set[str]] = {}
    for task in source.plan(32).tasks:
        split_of.setdefault(task.record.group, set()).add(task.split)
    assert len(split_of) == 11 and all(len(splits) == 1 for splits in split_of.values())
    assert len({s for splits in split_of.values() for s in splits}) > 1
