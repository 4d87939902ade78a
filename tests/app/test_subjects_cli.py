"""`brainvq sample --subjects N`: whole subjects as NIfTI volumes on the run's frame (the affine
round-trips, the voxels are the API's subjects), a montage and three orthogonal views each; bad
counts and a prior without the neighbour are refused in one line with nothing written."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

import brainvq
from brainvq.app import run_data
from brainvq.app.cli import main
from brainvq.app.run_data import run_frame
from brainvq.app.subjects import orthogonal_views


def exit_code(argv: list[str]) -> int:
    """main's exit code, argparse's refusals (SystemExit) included."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


def test_subjects_are_written_as_volumes_on_the_runs_frame(
    fake_subject_run: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "subjects"
    argv = ["sample", "--run", str(fake_subject_run), "--subjects", "2", "--seed", "3"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "wrote 2 subjects" in capsys.readouterr().out
    codes, volumes, levels = brainvq.sample_subjects(fake_subject_run, 2, seed=3)  # (2, 32, ...)
    assert levels.tolist() == list(range(32))
    frame, _ = run_frame(fake_subject_run)
    for i in range(2):
        image = nib.load(out / f"subject_{i:03d}.nii.gz")
        assert image.shape == (32, 32, 32) and image.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asarray(image.dataobj), volumes[i].transpose(1, 2, 0))
        np.testing.assert_allclose(image.affine, frame.affine_at(32), atol=1e-5)
        assert int(image.header["sform_code"]) == 4 and int(image.header["qform_code"]) == 4
        montage = np.asarray(Image.open(out / f"subject_{i:03d}_montage.png"))
        assert montage.ndim == 2 and montage.shape[1] > 8 * 32
        views = np.asarray(Image.open(out / f"subject_{i:03d}_views.png"))
        stretch = frame.level_spacing_mm / np.mean(frame.pixel_mm(32))  # levels per pixel
        np.testing.assert_array_equal(views, orthogonal_views(volumes[i], stretch))
    # each level is a draw of its own: adjacent code maps differ (the untrained decoder of the
    # fixture may render two different maps alike, so the codes are compared, not the images)
    assert not np.array_equal(codes[0, 10], codes[0, 11])
    record = json.loads((out / "subjects.json").read_text(encoding="utf-8"))
    assert record["subjects"] == 2 and record["seed"] == 3 and record["xform_code"] == 4
    with open(out / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["kind"] for r in rows} == {"volume", "montage", "views"}


def test_first_level_shifts_the_affine_by_whole_levels(
    fake_subject_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "upper"
    argv = ["sample", "--run", str(fake_subject_run), "--subjects", "1", "--first-level", "30"]
    assert main([*argv, "--out", str(out)]) == 0
    image = nib.load(out / "subject_000.nii.gz")
    assert image.shape == (32, 32, 2)
    want = run_frame(fake_subject_run)[0].affine_at(32)
    want[:3, 3] += 30 * want[:3, 2]
    np.testing.assert_allclose(image.affine, want, atol=1e-5)


def test_a_subject_takes_the_runs_frame_without_loading_its_slices(
    fake_subject_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frame of a run without RUN/space.json comes from its source's kind: the training set
    is not loaded (as it was once, to learn intensities the volume does not need) and no
    space.json is made."""
    run = tmp_path / "run"
    shutil.copytree(fake_subject_run, run)
    (run / "space.json").unlink(missing_ok=True)
    loads = []

    def load_slices(*args: object, **kwargs: object) -> None:
        loads.append(args)
        raise AssertionError("the training set was loaded")

    monkeypatch.setattr(run_data, "load_slices", load_slices)
    out = tmp_path / "subjects"
    assert main(["sample", "--run", str(run), "--subjects", "1", "--out", str(out)]) == 0
    assert loads == [] and not (run / "space.json").exists()
    image = nib.load(out / "subject_000.nii.gz")
    assert int(image.header["sform_code"]) == 4  # MNI152: the demo cohort's frame, not voxels
    frame, how = run_frame(run)
    assert how.startswith("by construction")
    np.testing.assert_allclose(image.affine, frame.affine_at(32), atol=1e-5)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--subjects", "0"], "--subjects: expected an integer in [1"),
        (["--subjects", "1", "--first-level", "32"], "first_level: expected a level in [0, 32)"),
        (["--subjects", "1", "--n", "4"], "--n counts slices"),
        (["--n", "2", "--sampler", "wavefront"], "--sampler wavefront draws whole subjects"),
        (["--subjects", "1", "--level", "3"], "not allowed with argument"),
    ],
)
def test_bad_requests_are_one_line_and_write_nothing(
    fake_subject_run: Path, tmp_path: Path, capsys, flags: list[str], message: str
) -> None:
    out = tmp_path / "never"
    assert exit_code(["sample", "--run", str(fake_subject_run), *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_run_without_the_neighbour_says_how_to_get_subjects(
    fake_run: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "never"
    assert main(["sample", "--run", str(fake_run), "--subjects", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "prior.neighbour: none" in err and "neighbour: previous" in err
    assert not out.exists()
    with pytest.raises(ValueError, match="not a subject"):
        brainvq.sample_subjects(fake_run, 1)
