"""NIfTI volumes: canonical orientation, brain slices, robust scaling, split by volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainvq.data import load_slices
from brainvq.data.splits import assign_splits

from .files import phantom, write_nifti


def test_volume_slices_oriented_like_oasis(tmp_path: Path, cache_dir: Path) -> None:
    write_nifti(tmp_path / "vols" / "subj_a.nii.gz", phantom())
    s = load_slices(tmp_path / "vols", 48, cache_dir=cache_dir, n_levels=8, progress=False)
    assert len(s) == 8 and s.images.shape[1:] == (48, 48)
    assert s.level.tolist() == list(range(8)) and s.n_levels == 8
    assert set(s.subject) == {"subj_a"} and s.splits_present == ("train",)
    middle = s.images[4].astype(float)
    h = middle.shape[0] // 2
    # Left (low x) is at the top, anterior (high y) on the right, as in the OASIS PNGs.
    assert middle[:h].mean() > middle[h:].mean() + 5
    assert middle[:, h:].mean() > middle[:, :h].mean() + 20
    # Robust scaling: brain intensities span the range, background stays black.
    assert middle[0, 0] == 0 and middle.max() == 255
    # Slices are taken over the brain only: the first and last still contain brain.
    assert (s.images[0] > 0).sum() > 0 and (s.images[-1] > 0).sum() > 0


def test_non_canonical_affine_is_reoriented(tmp_path: Path, cache_dir: Path) -> None:
    ras = phantom()
    write_nifti(tmp_path / "ras" / "v.nii", ras)
    las_affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    las_affine[0, 3] = ras.shape[0] - 1
    write_nifti(tmp_path / "las" / "v.nii", ras[::-1].copy(), las_affine)
    a = load_slices(tmp_path / "ras", 32, cache_dir=cache_dir, n_levels=6, progress=False)
    b = load_slices(tmp_path / "las", 32, cache_dir=cache_dir, n_levels=6, progress=False)
    np.testing.assert_array_equal(a.images, b.images)


def test_single_file_and_4d_takes_first_volume_with_a_note(tmp_path: Path, cache_dir: Path) -> None:
    vol = phantom()
    write_nifti(tmp_path / "three.nii", vol)
    write_nifti(tmp_path / "four.nii", np.stack([vol, vol[::-1] * 0.5], axis=-1))
    three = load_slices(tmp_path / "three.nii", 32, cache_dir=cache_dir, n_levels=5, progress=False)
    four = load_slices(tmp_path / "four.nii", 32, cache_dir=cache_dir, n_levels=5, progress=False)
    np.testing.assert_array_equal(three.images, four.images)
    assert any("4D image" in n and "took the first volume" in n for n in four.notes)


def test_split_by_volume(tmp_path: Path, cache_dir: Path) -> None:
    names = [f"vol{i}" for i in range(8)]
    for i, name in enumerate(names):
        write_nifti(tmp_path / f"{name}.nii", phantom() * (1 + 0.1 * i))
    s = load_slices(tmp_path, 16, cache_dir=cache_dir, n_levels=3, progress=False)
    expected = assign_splits(names)
    for name in names:
        assert set(s.split[s.subject == name]) == {expected[name]}
        assert s.level[s.subject == name].tolist() == [0, 1, 2]


@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 1)])
def test_2d_nifti_is_refused(tmp_path: Path, cache_dir: Path, shape: tuple[int, ...]) -> None:
    write_nifti(tmp_path / "flat.nii", np.ones(shape, dtype=np.float32))
    with pytest.raises(ValueError, match=r"flat\.nii: NIfTI image is 2D .*expected a 3D volume"):
        load_slices(tmp_path / "flat.nii", 32, cache_dir=cache_dir, progress=False)
    assert not cache_dir.exists()
