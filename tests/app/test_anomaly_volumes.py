"""`brainvq anomaly` on NIfTI scans: registered to the run's frame, answered in the scan's own
space (shape and affine), levels outside the scan NaN and listed, --mask honoured, the shift
warning, recalibration on the user's healthy scans, and bad volumes refused naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from data.files import brain_scan, write_nifti

from app.test_anomaly_cli import ALPHA, cli, scores
from brainvq.data.space.frame import oasis_frame

SCAN_SPACE = ("anomaly", "anomaly_mask", "brain_mask", "reconstruction", "healed")


def assert_in_scan_space(out: Path, stem: str, scan) -> None:
    """Every answer `out/<stem>_<what>.nii.gz` has the scan's shape and affine."""
    for what in SCAN_SPACE:
        image = nib.load(str(out / f"{stem}_{what}.nii.gz"))
        assert image.shape == scan.image.shape, what
        np.testing.assert_allclose(image.affine, scan.image.affine, atol=1e-4)


@pytest.fixture
def run(anomaly_tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of the tiny run: these tests write calibrations into it."""
    copy = tmp_path / "run"
    shutil.copytree(anomaly_tiny_run, copy)
    shutil.rmtree(copy / "anomaly", ignore_errors=True)
    return copy


def level_of_voxels(scan, size: int = 32) -> np.ndarray:
    """(scan shape) the frame level of every voxel under the scan's true pose."""
    shape = scan.image.shape
    ijk = np.indices(shape).reshape(3, -1)
    world = scan.image.affine[:3, :3] @ ijk + scan.image.affine[:3, 3:4]
    inverse = np.linalg.inv(scan.to_scan)
    mni = inverse[:3, :3] @ world + inverse[:3, 3:4]
    return oasis_frame().to_grid(mni, size)[2].reshape(shape)


@pytest.mark.parametrize(
    "orientation, extra",
    [("LPS", {}), ("LAS", {}), ("RAS", {"oblique_deg": 14.0})],
    ids=["LPS", "LAS", "oblique"],
)
def test_answers_come_back_in_the_scans_own_space(
    run: Path, tmp_path: Path, capsys, orientation: str, extra: dict
) -> None:
    path, scan = brain_scan(tmp_path / "in" / "sub-01_T1w.nii.gz", orientation, seed=5, **extra)
    out = tmp_path / "out"
    argv = ["anomaly", "--run", run, "--input", path, "--out", out, "--alpha", ALPHA]
    code, stdout, err = cli(argv, capsys)
    assert code == 0, err
    assert_in_scan_space(out, "sub-01_T1w", scan)
    amap = nib.load(str(out / "sub-01_T1w_anomaly.nii.gz")).get_fdata()
    level = level_of_voxels(scan)
    n = oasis_frame().n_levels
    assert np.isnan(amap[(level < -2) | (level > n + 1)]).all()  # beyond the run's levels
    inside = (level > 2) & (level < n - 3)
    assert np.isfinite(amap[inside]).all() and (amap[inside] >= 0).all()
    brain = nib.load(str(out / "sub-01_T1w_brain_mask.nii.gz")).get_fdata() > 0
    used, true = brain[inside], scan.brain[inside]
    assert 2 * (used & true).sum() / (used.sum() + true.sum()) > 0.85  # Dice with the truth
    aligned = nib.load(str(out / "aligned" / "sub-01_T1w_anomaly.nii.gz"))
    assert aligned.shape == (32, 32, n)
    np.testing.assert_allclose(aligned.affine, oasis_frame().affine_at(32), atol=1e-4)
    transform = json.loads((out / "sub-01_T1w_transform.json").read_text(encoding="utf-8"))
    found = np.asarray(transform["reference_to_scan"])
    centre = np.array([0.0, -18.0, 18.0, 1.0])
    assert np.linalg.norm(found @ centre - scan.to_scan @ centre) < 3.0
    assert (out / "sub-01_T1w_registration.png").is_file()
    assert (
        (out / "sub-01_T1w_transform.tfm")
        .read_text(encoding="utf-8")
        .startswith("#Insight Transform File")
    )
    rows = scores(out)
    assert len(rows) == n and {r["level_from"] for r in rows} == {"frame"}
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    volume = summary["volumes"][0]
    assert volume["brain_mask"] == "own" and volume["levels_covered"] == list(range(n))


def test_levels_the_scan_does_not_reach_are_nan_and_listed(
    run: Path, tmp_path: Path, capsys
) -> None:
    path, scan = brain_scan(
        tmp_path / "cut.nii.gz",
        seed=6,
        rotation_deg=(0, 0, 0),
        shift_mm=(0, 0, 0),
        scale=(1, 1, 1),
        crop_mm=(0, 0, 0, 0, 0, 78.0),
    )
    out = tmp_path / "out"
    code, _, err = cli(
        ["anomaly", "--run", run, "--input", path, "--out", out, "--alpha", ALPHA], capsys
    )
    assert code == 0, err
    volume = json.loads((out / "summary.json").read_text(encoding="utf-8"))["volumes"][0]
    missing = sorted(int(k) for k in volume["levels_not_covered"])
    assert missing and missing[-1] == 31 and "field of view" in volume["levels_not_covered"]["31"]
    assert len(scores(out)) == 32 - len(missing)
    amap = nib.load(str(out / "cut_anomaly.nii.gz")).get_fdata()
    level = level_of_voxels(scan)
    assert np.isnan(amap[level > missing[0] + 1]).all()


def test_a_users_mask_is_honoured(run: Path, tmp_path: Path, capsys) -> None:
    path, scan = brain_scan(tmp_path / "s.nii.gz", seed=7)
    mask = scan.brain.copy()
    mask[: mask.shape[0] // 2] = False  # only one half of the brain
    mask_path = write_nifti(tmp_path / "s_mask.nii.gz", mask.astype(np.uint8), scan.image.affine)
    out = tmp_path / "out"
    argv = ["anomaly", "--run", run, "--input", path, "--mask", mask_path, "--out", out]
    code, _, err = cli([*argv, "--alpha", ALPHA], capsys)
    assert code == 0, err
    used = nib.load(str(out / "s_brain_mask.nii.gz")).get_fdata() > 0
    np.testing.assert_array_equal(used, mask)
    flagged = nib.load(str(out / "s_anomaly_mask.nii.gz")).get_fdata() > 0
    assert not (flagged & ~mask).any()
    assert (
        json.loads((out / "summary.json").read_text(encoding="utf-8"))["volumes"][0]["brain_mask"]
        == "user"
    )


def test_shift_warning_fires_on_another_contrast_not_on_a_healthy_scan_of_the_kind(
    run: Path, tmp_path: Path, capsys
) -> None:
    """Calibrated on seven healthy scans (224 slices), an eighth healthy one is covered by the
    guarantee; the same brain with its T1 contrast inverted is not, and says so."""
    for i in range(7):
        brain_scan(tmp_path / "healthy" / f"h{i}.nii.gz", seed=20 + i, voxel_mm=4.0)
    code, stdout, err = cli(
        [
            "anomaly",
            "calibrate",
            "--run",
            run,
            "--healthy",
            tmp_path / "healthy",
            "--alpha",
            "0.05",
        ],
        capsys,
    )
    assert code == 0, err
    assert "healthy scans" in stdout and "224" in stdout
    results = {}
    for name, invert in (("healthy", False), ("inverted", True)):
        path, _ = brain_scan(tmp_path / f"{name}.nii.gz", seed=30, voxel_mm=4.0, invert=invert)
        out = tmp_path / f"out_{name}"
        argv = ["anomaly", "--run", run, "--input", path, "--out", out, "--alpha", "0.05"]
        code, stdout, err = cli(argv, capsys)
        assert code == 0, err
        results[name] = (stdout, json.loads((out / "summary.json").read_text(encoding="utf-8")))
    healthy, inverted = results["healthy"], results["inverted"]
    assert "WARNING" not in healthy[0] and healthy[1]["volumes"][0]["calibration_applies"]
    assert "WARNING" in inverted[0] and not inverted[1]["volumes"][0]["calibration_applies"]
    assert "healthy scans" in healthy[1]["calibration"]["source"]


def test_a_4d_series_is_scored_on_its_first_volume_with_a_note(
    run: Path, tmp_path: Path, capsys
) -> None:
    _, scan = brain_scan(tmp_path / "src.nii.gz", seed=8)
    volume = np.asarray(scan.image.dataobj, dtype=np.float32)
    series = write_nifti(
        tmp_path / "bold.nii.gz", np.stack([volume, volume * 0.9], axis=-1), scan.image.affine
    )
    out = tmp_path / "out"
    code, stdout, err = cli(
        ["anomaly", "--run", run, "--input", series, "--out", out, "--alpha", ALPHA], capsys
    )
    assert code == 0, err
    assert "took the first volume" in stdout
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert any("took the first volume" in n for n in summary["notes"])
    assert nib.load(str(out / "bold_anomaly.nii.gz")).shape == volume.shape


@pytest.mark.parametrize("case", ["2d", "mask-shape", "no-brain"])
def test_bad_volumes_get_one_line_naming_the_file(
    run: Path, tmp_path: Path, capsys, case: str
) -> None:
    extra = []
    if case == "2d":
        path = write_nifti(tmp_path / "flat.nii.gz", np.ones((40, 40), np.float32))
        expected = "flat.nii.gz: NIfTI image is 2D"
    elif case == "mask-shape":
        path, scan = brain_scan(tmp_path / "s.nii.gz", seed=9)
        mask = write_nifti(tmp_path / "m.nii.gz", np.ones((10, 10, 10), np.uint8))
        extra = ["--mask", mask]
        expected = "m.nii.gz: the mask's shape (10, 10, 10) differs from the scan's"
    else:
        rng = np.random.default_rng(0)
        path = write_nifti(
            tmp_path / "noise.nii.gz",
            rng.random((60, 60, 60)).astype(np.float32),
            np.diag([3.0, 3.0, 3.0, 1.0]),
        )
        expected = "noise.nii.gz: "
    out = tmp_path / "out"
    code, _, err = cli(
        ["anomaly", "--run", run, "--input", path, "--out", out, "--alpha", ALPHA, *extra], capsys
    )
    assert code == 2 and err.count("\n") == 0 and expected in err, err
    assert not out.exists() or not any(out.iterdir())


def test_a_run_trained_on_nifti_volumes_answers_for_a_new_scan_of_its_cohort(
    tmp_path: Path, capsys
) -> None:
    """`train all --data FOLDER_OF_NIFTI` slices the volumes on the frame (levels from their
    height in MNI152), records it, and a new scan from the cohort is put on the same frame."""
    from tiny import TINY_CONFIG

    from brainvq.app.run_data import run_space

    cohort = tmp_path / "cohort"
    for i in (0, 1, 4):  # the split's hash puts sub-04 in validate
        brain_scan(
            cohort / f"sub-{i:02d}_T1w.nii.gz", "LPS" if i % 2 else "RAS", seed=40 + i, voxel_mm=4.0
        )
    run = tmp_path / "run"
    argv = ["train", "vqvae", "--data", cohort, "--config", TINY_CONFIG, "--out", run]
    code, _, err = cli([*argv, "--epochs", "2"], capsys)
    assert code == 0, err
    space = run_space(run)
    assert space.frame_source.startswith("by registration") and space.frame.n_levels == 32
    new, scan = brain_scan(tmp_path / "new.nii.gz", "LAS", seed=50, voxel_mm=4.0)
    out = tmp_path / "recon"
    code, _, err = cli(["reconstruct", "--model", run, "--input", new, "--out", out], capsys)
    assert code == 0, err
    recon = nib.load(str(out / "new_reconstruction.nii.gz"))
    assert recon.shape == scan.image.shape
    assert len(list(out.glob("new_level_*.png"))) == 32


def test_outside_the_brain_the_scan_is_dressed_like_the_training_slices(
    run: Path, tmp_path: Path
) -> None:
    """The run's slices have a bright rim around the brain (the demo cohort's, like OASIS's):
    an aligned scan gets the training slices' mean profile painted outside its brain mask."""
    import brainvq
    from brainvq.app.run_data import run_space

    path, _ = brain_scan(tmp_path / "s.nii.gz", seed=11, voxel_mm=4.0)
    result = brainvq.anomaly(run, path, alpha=float(ALPHA))
    aligned = result.volumes[0]
    outside = aligned.images[~aligned.brain].astype(float) / 255
    profile = np.asarray(run_space(run).outside_profile)
    assert profile.max() > 0.1  # the tiny demo run's slices have a rim
    assert outside.max() >= 0.8 * profile.max() and outside.mean() > 0.01
