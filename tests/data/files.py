"""Real test files for the data layer, made in tmp dirs with the real naming schemes."""

from __future__ import annotations

import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

# A small OASIS copy: subjects per split, 4 slices each (real copies have 32).
OASIS_SUBJECTS = {"train": ["001", "002", "003"], "validate": ["010"], "test": ["020"]}
OASIS_SLICES = 4
FOLDERS = {
    "train": "keras_png_slices_train",
    "validate": "keras_png_slices_validate",
    "test": "keras_png_slices_test",
}


def slice_pixels(subject: str, k: int, size: int = 256) -> np.ndarray:
    """A deterministic 8-bit test slice (random texture, distinct per subject and slice)."""
    rng = np.random.default_rng([int(subject), k])
    return rng.integers(0, 256, size=(size, size), dtype=np.uint8)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def make_oasis_tree(
    root: Path, splits: tuple[str, ...] = ("train", "validate", "test"), seg: bool = True
) -> Path:
    """root/keras_png_slices_data/keras_png_slices_<split>/case_<s>_slice_<k>.nii.png (+ seg)."""
    data = root / "keras_png_slices_data"
    for split in splits:
        for subject in OASIS_SUBJECTS[split]:
            for k in range(OASIS_SLICES):
                write_png(
                    data / FOLDERS[split] / f"case_{subject}_slice_{k}.nii.png",
                    slice_pixels(subject, k),
                )
                if seg:
                    mask = (slice_pixels(subject, k) > 128).astype(np.uint8) * 85
                    write_png(
                        data / f"keras_png_slices_seg_{split}" / f"seg_{subject}_slice_{k}.nii.png",
                        mask,
                    )
    return data


def make_oasis_zip(path: Path, tree_root: Path) -> Path:
    """A zip of a tree made by make_oasis_tree, with the folder names the course zip uses."""
    data = make_oasis_tree(tree_root)
    with zipfile.ZipFile(path, "w") as zf:
        for file in sorted(data.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(tree_root).as_posix())
    return path


def phantom(shape: tuple[int, int, int] = (40, 48, 36)) -> np.ndarray:
    """A brain-like ellipsoid (float32) that is brighter towards the front (high y) and the
    left (low x) in RAS voxel order, so that a slice shows which way it is oriented."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    inside = (x / 0.7) ** 2 + (y / 0.8) ** 2 + (z / 0.6) ** 2 <= 1
    return (inside * (60 + 30 * y - 15 * x)).astype(np.float32)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def brain_scan(
    path: Path,
    orientation: str = "RAS",
    voxel_mm: float | tuple[float, float, float] = 3.0,
    seed: int = 0,
    **acquisition,
):
    """A small synthetic T1 brain scan written to `path` (the MNI152 template under a known pose,
    skull-stripped unless skull=True; brainvq.evaluation.synthetic_scans), and its truth."""
    from brainvq.evaluation.synthetic_scans import Acquisition, make_scan

    voxel = (voxel_mm,) * 3 if np.isscalar(voxel_mm) else tuple(voxel_mm)
    rng = np.random.default_rng(seed)
    settings = dict(
        orientation=orientation,
        voxel_mm=voxel,
        rotation_deg=tuple(rng.uniform(-10, 10, 3)),
        shift_mm=tuple(rng.uniform(-30, 30, 3)),
        scale=tuple(1 + rng.uniform(-0.05, 0.05, 3)),
        noise=0.01,
    )
    lesions = acquisition.pop("lesions", None)
    settings.update(acquisition)
    scan = make_scan(Acquisition(**settings), lesions, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(scan.image, str(path))
    return path, scan
