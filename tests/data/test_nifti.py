"""NIfTI volumes as training data: registered, sliced on the reference frame, split by volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainvq.data import load_slices
from brainvq.data.space.frame import oasis_frame
from brainvq.data.splits import assign_splits

from .files import brain_scan, write_nifti


def test_a_volume_gives_the_frames_levels_whatever_its_orientation(
    tmp_path: Path, cache_dir: Path
) -> None:
    """The same brain acquired as RAS and as LPS at another pose gives the same slices: level k
    is the same anatomy, not the k-th slice of the file."""
    brain_scan(tmp_path / "ras" / "subj.nii.gz", "RAS", seed=1, rotation_deg=(0, 0, 0))
    brain_scan(tmp_path / "lps" / "subj.nii.gz", "PIR", seed=1, rotation_deg=(8, -6, 10))
    a = load_slices(tmp_path / "ras", 32, cache_dir=cache_dir, progress=False)
    b = load_slices(tmp_path / "lps", 32, cache_dir=cache_dir, progress=False)
    assert a.n_levels == 32 and a.level.tolist() == list(range(32))
    assert b.level.tolist() == list(range(32))
    assert a.filename[5] == "subj.nii.gz#level5"
    difference = np.abs(a.images.astype(float) - b.images.astype(float))
    brain = (a.images > 0) | (b.images > 0)
    assert difference[brain].mean() < 12  # of 255: interpolation and noise, not anatomy
    # background outside the brain mask is black, the brain is bright
    assert a.images[16, 0, 0] == 0 and a.images[16].max() > 100


def test_a_volume_not_reaching_the_band_gives_only_its_covered_levels(
    tmp_path: Path, cache_dir: Path
) -> None:
    """A field of view cut 45 mm above the centre of the brain loses the band's upper levels;
    they are left out, not made up."""
    frame = oasis_frame()
    brain_scan(
        tmp_path / "cut" / "top_cut.nii.gz",
        "RAS",
        seed=2,
        rotation_deg=(0, 0, 0),
        shift_mm=(0, 0, 0),
        scale=(1, 1, 1),
        crop_mm=(0, 0, 0, 0, 0, 78.0),
    )
    s = load_slices(tmp_path / "cut", 32, cache_dir=cache_dir, progress=False)
    top = frame.level_z(s.level).max()
    assert 0 < len(s) < 32 and s.n_levels == 32
    assert top < frame.level_z([31])[0]
    assert any("outside the field of view" in n for n in s.notes)


def test_z_range_takes_every_level_of_the_grid_between_two_heights(
    tmp_path: Path, cache_dir: Path
) -> None:
    brain_scan(tmp_path / "v" / "a.nii.gz", seed=3)
    s = load_slices(
        tmp_path / "v", 32, cache_dir=cache_dir, z_range_mm=(-20.0, 40.0), progress=False
    )
    spacing = oasis_frame().level_spacing_mm
    assert s.n_levels == pytest.approx(60 / spacing, abs=1.5)
    assert len(s) == s.n_levels


def test_split_by_volume(tmp_path: Path, cache_dir: Path) -> None:
    names = [f"vol{i}" for i in range(4)]
    for i, name in enumerate(names):
        brain_scan(tmp_path / "all" / f"{name}.nii", seed=10 + i, voxel_mm=6.0)
    s = load_slices(tmp_path / "all", 16, cache_dir=cache_dir, n_levels=3, progress=False)
    expected = assign_splits(names)
    for name in names:
        assert set(s.split[s.subject == name]) == {expected[name]}
        assert s.level[s.subject == name].tolist() == [0, 1, 2]


def test_nan_background_is_treated_as_background_with_a_note(
    tmp_path: Path, cache_dir: Path
) -> None:
    path, scan = brain_scan(tmp_path / "src" / "masked.nii.gz", seed=4)
    data = np.asarray(scan.image.dataobj, dtype=np.float32).copy()
    data[~scan.brain] = np.nan
    write_nifti(tmp_path / "nan" / "masked.nii.gz", data, scan.image.affine)
    s = load_slices(tmp_path / "nan", 32, cache_dir=cache_dir, progress=False)
    assert len(s) == 32
    assert any("NaN voxels" in n and "treated as background" in n for n in s.notes)


@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 1)])
def test_2d_nifti_is_refused(tmp_path: Path, cache_dir: Path, shape: tuple[int, ...]) -> None:
    write_nifti(tmp_path / "flat.nii", np.ones(shape, dtype=np.float32))
    with pytest.raises(ValueError, match=r"flat\.nii: NIfTI image is 2D .*expected a 3D volume"):
        load_slices(tmp_path / "flat.nii", 32, cache_dir=cache_dir, progress=False)
    assert not cache_dir.exists()


def test_a_volume_with_no_brain_is_refused_naming_it(tmp_path: Path, cache_dir: Path) -> None:
    rng = np.random.default_rng(0)
    write_nifti(tmp_path / "noise.nii.gz", rng.random((30, 30, 30)).astype(np.float32))
    with pytest.raises(ValueError, match=r"noise\.nii\.gz: "):
        load_slices(tmp_path / "noise.nii.gz", 32, cache_dir=cache_dir, progress=False)


def test_data_inspect_draws_each_volumes_registration_check(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from brainvq.app.cli import main

    path, _ = brain_scan(tmp_path / "v" / "s.nii.gz", "LPS", seed=1, voxel_mm=4.0)
    argv = ["data", "inspect", str(path), "--size", "32", "--cache-dir", str(cache_dir)]
    assert main([*argv, "--no-progress", "--figures", str(tmp_path / "fig")]) == 0
    figure = np.asarray(Image.open(tmp_path / "fig" / "s_registration.png"))
    assert figure.ndim == 3 and (figure[..., 0] > 200).any()  # the template's red outline
    out = capsys.readouterr().out
    assert "LPS" in out and "32 of 32 OASIS levels covered" in out
