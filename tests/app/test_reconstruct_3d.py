"""`brainvq reconstruct` and `brainvq encode` with a tiny 3D run, through the CLI on real files: an
OASIS-named PNG folder reconstructed subject by subject under each slice's own name, NIfTI
volumes answered in their own space (one covering an odd number of the frame's levels, so padded
to whole latent levels and cropped back), code volumes that decode to the reconstructions, and
the inputs a 3D run cannot code refused in one line with exit 2."""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from data.files import brain_scan
from PIL import Image
from tiny import brainvq_cli, train_tiny_3d

import brainvq
from brainvq.app.run_data import run_slices
from brainvq.data.subject_volumes import subject_volumes
from brainvq.io.images import save_png
from brainvq.run import load_run

LEVELS, SIZE, STRIDE = 16, 32, 2  # tiny_3d.yaml: 16 levels of 32x32, level_downsample 2
SUBJECTS = ("001", "002")


@pytest.fixture(scope="module")
def run_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 3D run: `train vqvae` on tiny_3d.yaml (seconds)."""
    return train_tiny_3d(tmp_path_factory.mktemp("run3d"))


@pytest.fixture(scope="module")
def volumes(run_3d: Path) -> dict[str, np.ndarray]:
    """Two of the run's own training subjects, (LEVELS, SIZE, SIZE) uint8 each."""
    sliceset = run_slices(load_run(run_3d), progress=False)
    rows = subject_volumes(sliceset, "train", STRIDE).rows
    return {s: np.asarray(sliceset.images[r]) for s, r in zip(SUBJECTS, rows, strict=False)}


def oasis_folder(folder: Path, volumes: dict[str, np.ndarray], drop=()) -> Path:
    """volumes as case_<subject>_slice_<k>.nii.png files, but the (subject, k) in `drop`."""
    for subject, volume in volumes.items():
        for k, image in enumerate(volume):
            if (subject, k) not in drop:
                save_png(folder / f"case_{subject}_slice_{k}.nii.png", image)
    return folder


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def manifest(folder: Path) -> list[dict[str, str]]:
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if "error" in line]


def test_an_oasis_folder_is_reconstructed_subject_by_subject_under_each_slices_name(
    run_3d: Path, volumes: dict[str, np.ndarray], tmp_path: Path
) -> None:
    pngs = oasis_folder(tmp_path / "pngs", volumes)
    out = tmp_path / "out"
    done = brainvq_cli("reconstruct", "--model", run_3d, "--input", pngs, "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    inputs = sorted(p.name for p in pngs.iterdir())
    assert sorted(p.name for p in out.glob("case_*.png")) == inputs
    rows = manifest(out)
    assert sorted(r["output"] for r in rows) == inputs
    for subject, volume in volumes.items():
        recon = np.stack(
            [read_png(out / f"case_{subject}_slice_{k}.nii.png") for k in range(LEVELS)]
        )  # (LEVELS, SIZE, SIZE): the subject's slices in level order
        assert recon.shape == volume.shape and recon.dtype == np.uint8
        # the volume coded whole, not slice by slice (nor in file-name order: 10 before 2)
        whole = brainvq.decode(run_3d, brainvq.encode(run_3d, volume[None]))[0]
        assert np.array_equal(recon, whole)
        mine = [r for r in rows if r["input"].startswith(f"case_{subject}_")]
        assert [int(r["level"]) for r in mine] == list(range(LEVELS))  # level order
    assert read_png(out / "grid.png").ndim == 2


def test_the_folders_codes_are_code_volumes_that_decode_to_its_reconstruction(
    run_3d: Path, volumes: dict[str, np.ndarray], tmp_path: Path
) -> None:
    pngs = oasis_folder(tmp_path / "pngs", volumes)
    done = brainvq_cli("encode", "--model", run_3d, "--input", pngs, "--out", tmp_path / "codes")
    assert done.returncode == 0, done.stderr[-3000:]
    done = brainvq_cli("reconstruct", "--model", run_3d, "--input", pngs, "--out", tmp_path / "r")
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(tmp_path / "codes" / "codes.npz") as f:
        assert int(f["dims"]) == 3 and int(f["level_stride"]) == STRIDE
        codes, names, levels = f["codes"], f["names"], f["levels"]
    assert codes.shape == (len(SUBJECTS) * LEVELS // STRIDE, SIZE // 4, SIZE // 4)
    assert codes.dtype == np.int16 and sorted(set(names.tolist())) == list(SUBJECTS)
    for subject in SUBJECTS:
        mine = codes[names == subject]  # (LEVELS / STRIDE, h, w): its code volume
        assert levels[names == subject].tolist() == list(range(LEVELS // STRIDE))
        decoded = brainvq.decode(run_3d, mine[None])[0]
        recon = [read_png(tmp_path / "r" / f"case_{subject}_slice_{k}.nii.png") for k in range(16)]
        assert np.array_equal(decoded, np.stack(recon))


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ((("002", 7),), "subject '002' of .* has levels .*6, 8.*: a volume needs consecutive"),
        ((("002", 15),), "subject '002' of .* has 15 levels .*, not a multiple of .* stride 2"),
    ],
    ids=["missing-slice", "uneven-depth"],
)
@pytest.mark.parametrize("command", ["reconstruct", "encode"])
def test_a_subject_that_is_not_a_volume_is_named_in_one_line(
    run_3d: Path,
    volumes: dict[str, np.ndarray],
    tmp_path: Path,
    drop: tuple,
    message: str,
    command: str,
) -> None:
    pngs = oasis_folder(tmp_path / "pngs", volumes, drop)
    out = tmp_path / "out"
    done = brainvq_cli(command, "--model", run_3d, "--input", pngs, "--out", out)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = error_lines(done)
    assert len(lines) == 1, done.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists()


@pytest.mark.parametrize("command", ["reconstruct", "encode"])
def test_a_single_slice_is_refused_in_one_line(run_3d: Path, tmp_path: Path, command: str) -> None:
    png = save_png(tmp_path / "case_001_slice_3.nii.png", np.zeros((SIZE, SIZE), np.uint8))
    out = tmp_path / "out"
    done = brainvq_cli(command, "--model", run_3d, "--input", png, "--out", out)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "is one slice, but a 3D run codes whole subjects" in lines[0], lines[0]
    assert not out.exists()


def test_limit_keeps_whole_subjects(
    run_3d: Path, volumes: dict[str, np.ndarray], tmp_path: Path
) -> None:
    pngs = oasis_folder(tmp_path / "pngs", volumes)
    common = ("reconstruct", "--model", run_3d, "--input", pngs, "--limit")
    limit = LEVELS + LEVELS // 2  # one subject and half of the next
    done = brainvq_cli(*common, limit, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = manifest(tmp_path / "out")
    assert len(rows) == LEVELS and len({r["input"].split("_slice_")[0] for r in rows}) == 1
    done = brainvq_cli(*common, LEVELS - 1, "--out", tmp_path / "less")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "a 3D run reconstructs whole subjects" in done.stderr


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, nib.Nifti1Image]]:
    """A folder of two NIfTI scans: one holding the whole brain (turned, shifted, LAS), one cut
    off above the frame's fifth level (so it covers an odd number of levels)."""
    folder = tmp_path_factory.mktemp("scans")
    _, whole = brain_scan(folder / "whole.nii.gz", "LAS", seed=3)
    _, cut = brain_scan(
        folder / "cut.nii.gz",
        seed=3,
        rotation_deg=(0.0, 0.0, 0.0),
        shift_mm=(0.0, 0.0, 0.0),
        crop_mm=(0.0, 0.0, 0.0, 0.0, 0.0, 80.0),
    )
    return folder, {"whole": whole.image, "cut": cut.image}


@pytest.fixture(scope="module")
def scan_outputs(
    run_3d: Path, scans: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """`brainvq reconstruct` and `brainvq encode` of the scans folder: (their out folders)."""
    outs = tmp_path_factory.mktemp("scan_outputs")
    for command in ("reconstruct", "encode"):
        done = brainvq_cli(command, "--model", run_3d, "--input", scans[0], "--out", outs / command)
        assert done.returncode == 0, done.stderr[-3000:]
    return outs / "reconstruct", outs / "encode"


def covered(out: Path, name: str) -> list[int]:
    """The frame levels of a scan that reconstruct answered (its manifest rows)."""
    return [int(r["level"]) for r in manifest(out) if r["input"].startswith(f"{name}.nii.gz#")]


def test_volumes_are_answered_in_their_own_space(
    scans: tuple[Path, dict], scan_outputs: tuple[Path, Path]
) -> None:
    recon_out, codes_out = scan_outputs
    assert covered(recon_out, "whole") == list(range(LEVELS))
    cut = covered(recon_out, "cut")
    assert len(cut) % STRIDE == 1 and cut == list(range(cut[0], cut[0] + len(cut))), cut
    for name, image in scans[1].items():
        for path in (
            recon_out / f"{name}_reconstruction.nii.gz",
            codes_out / f"{name}_codes.nii.gz",
        ):
            answer = nib.load(path)
            assert answer.shape == image.shape, path
            np.testing.assert_allclose(answer.affine, image.affine, atol=1e-4)
        for k in covered(recon_out, name):
            assert read_png(recon_out / f"{name}_level_{k}.png").shape == (SIZE, SIZE)
    values = nib.load(recon_out / "cut_reconstruction.nii.gz").get_fdata()
    assert np.isfinite(values).any() and np.isnan(values).any()  # levels it does not cover


def test_the_codes_of_volumes_decode_to_their_reconstruction(
    run_3d: Path, scan_outputs: tuple[Path, Path]
) -> None:
    recon_out, codes_out = scan_outputs
    with np.load(codes_out / "codes.npz") as f:
        assert int(f["dims"]) == 3 and int(f["level_stride"]) == STRIDE
        codes, names, levels = f["codes"], f["names"], f["levels"]
    assert sorted(set(names.tolist())) == ["cut.nii.gz", "whole.nii.gz"]
    for name in ("whole", "cut"):
        mine, latent = codes[names == f"{name}.nii.gz"], levels[names == f"{name}.nii.gz"]
        k = covered(recon_out, name)
        # whole latent levels of the frame around the covered levels, padded then cropped back
        assert latent.tolist() == list(range(k[0] // STRIDE, k[-1] // STRIDE + 1))
        decoded = brainvq.decode(run_3d, mine[None])[0]  # (latent levels x STRIDE, H, W)
        before = k[0] - latent[0] * STRIDE
        recon = np.stack([read_png(recon_out / f"{name}_level_{i}.png") for i in k])
        assert np.array_equal(decoded[before : before + len(k)], recon)
        in_scan = np.asarray(nib.load(codes_out / f"{name}_codes.nii.gz").dataobj)
        assert set(np.unique(in_scan[in_scan >= 0])) <= set(np.unique(mine))
