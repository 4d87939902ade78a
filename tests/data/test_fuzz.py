"""Fuzzing the loaders: random bytes, truncations and bit flips of valid files fed as an OASIS
PNG, a keras_png_slices_data.zip and a NIfTI volume (.nii and .nii.gz), through load_slices and
`brainvq data inspect`. Every failure must be a ValueError/FileNotFoundError naming the file
(exit 2 with one line on the CLI), never a library exception (BadZipFile, zlib.error, EOFError,
struct.error, nibabel or PIL errors)."""

from __future__ import annotations

import functools
import gzip
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from brainvq.app.cli import main
from brainvq.data import load_slices

CASES = 30  # per kind of corruption
# NIfTI volumes that still parse go through a whole registration (about 1.5 s): fewer cases
CASES_PER_KIND = {"nii": 8, "nii_gz": 8}
SEED = 20260
SLICE = "case_001_slice_0.nii.png"


def png_bytes(seed: int) -> bytes:
    """A valid 8-bit 64x64 PNG with random texture."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(64, 64), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def zip_bytes() -> bytes:
    """A valid keras_png_slices_data.zip with one train and one validate slice (deflated)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"keras_png_slices_data/keras_png_slices_train/{SLICE}", png_bytes(1))
        zf.writestr(
            "keras_png_slices_data/keras_png_slices_validate/case_002_slice_0.nii.png",
            png_bytes(2),
        )
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def nii_bytes() -> bytes:
    """A valid single-file NIfTI-1 volume: a synthetic T1 brain at 6 mm (about 30^3 voxels)."""
    from brainvq.evaluation.synthetic_scans import Acquisition, make_scan

    scan = make_scan(Acquisition(voxel_mm=(6.0, 6.0, 6.0), noise=0.01))
    data = np.asarray(scan.image.dataobj, dtype=np.float32)
    return nib.Nifti1Image(data, scan.image.affine).to_bytes()


def variants(valid: bytes, seed: int, cases: int = CASES) -> list[bytes]:
    """`cases` random byte strings, truncations and bit-flipped copies of `valid` each."""
    rng = np.random.default_rng(seed)
    out = [rng.bytes(int(rng.integers(200, 4000))) for _ in range(cases)]
    out += [valid[: int(rng.integers(1, len(valid)))] for _ in range(cases)]
    for _ in range(cases):
        flipped = bytearray(valid)
        for pos in rng.integers(0, len(valid), size=int(rng.integers(1, 9))):
            flipped[pos] ^= 1 << int(rng.integers(0, 8))
        out.append(bytes(flipped))
    return out


def place_oasis_png(root: Path, data: bytes) -> Path:
    """An OASIS-layout folder whose train slice holds `data` (the validate slice is valid)."""
    train = root / "keras_png_slices_data" / "keras_png_slices_train"
    train.mkdir(parents=True)
    (train / SLICE).write_bytes(data)
    validate = root / "keras_png_slices_data" / "keras_png_slices_validate"
    validate.mkdir(parents=True)
    (validate / "case_002_slice_0.nii.png").write_bytes(png_bytes(2))
    return root


def place_file(name: str) -> Callable[[Path, bytes], Path]:
    def place(root: Path, data: bytes) -> Path:
        root.mkdir(parents=True)
        path = root / name
        path.write_bytes(data)
        return path

    return place


KINDS = {
    "oasis_png": (place_oasis_png, lambda: png_bytes(1)),
    "zip": (place_file("keras_png_slices_data.zip"), zip_bytes),
    "nii": (place_file("brain.nii"), nii_bytes),
    "nii_gz": (place_file("brain.nii.gz"), lambda: gzip.compress(nii_bytes(), mtime=0)),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_load_slices_fails_only_with_value_errors(kind: str, tmp_path: Path) -> None:
    place, make_valid = KINDS[kind]
    valid = make_valid()
    good = load_slices(
        place(tmp_path / "valid", valid),
        size=32,
        cache_dir=tmp_path / "cache",
        n_levels=4,
        progress=False,
    )
    assert len(good) >= 1 and good.images.shape[1:] == (32, 32)
    failures = 0
    cases = CASES_PER_KIND.get(kind, CASES)
    for i, data in enumerate(variants(valid, SEED + len(kind), cases)):
        source = place(tmp_path / f"case{i}", data)
        try:
            load_slices(source, size=32, cache_dir=tmp_path / "cache", n_levels=4, progress=False)
        except (ValueError, FileNotFoundError) as e:
            failures += 1
            assert str(tmp_path / f"case{i}") in str(e), f"case {i}: error names no file: {e}"
        except Exception as e:  # the point of the test: say which case let what escape
            pytest.fail(f"{kind} case {i}: {type(e).__module__}.{type(e).__name__}: {e}")
    assert failures >= cases, f"only {failures} of {3 * cases} corrupt {kind} inputs were refused"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_data_inspect_exits_2_with_one_line(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    place, make_valid = KINDS[kind]
    cases = variants(make_valid(), SEED + 7 + len(kind), CASES_PER_KIND.get(kind, CASES))[::9]
    for i, data in enumerate(cases):
        source = place(tmp_path / f"case{i}", data)
        argv = ["data", "inspect", str(source), "--size", "32", "--n-levels", "4"]
        code = main([*argv, "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
        err = capsys.readouterr().err.strip()
        if code == 0:
            continue
        assert code == 2, f"{kind} case {i}: exit {code}"
        assert err.count("\n") == 0 and err.startswith("brainvq data: error: "), err
        assert str(tmp_path / f"case{i}") in err
