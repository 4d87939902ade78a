"""A tiny 3D run end to end: both stages through the CLI on the demo cohort's volumes, its codes
as latent levels, evaluation on three planes, whole subjects drawn and decoded, the Python API
on volumes, and the workflows a 3D run refuses in one line with exit 2 (reconstruct and encode
take it: tests/app/test_reconstruct_3d.py; export: tests/io/test_export_3d.py; anomaly takes
scans and refuses slices: tests/app/test_anomaly_3d.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY_3D, brainvq_cli

import brainvq
from brainvq.app.run_data import run_slices
from brainvq.data.subject_volumes import subject_volumes
from brainvq.inference.codes import decode_codes, encode_images, load_codes
from brainvq.inference.generate import generate_subjects
from brainvq.inference.run_models import load_run_models
from brainvq.inference.subjects import sample_subjects
from brainvq.io.images import save_png
from brainvq.run import load_run

LEVELS, SIZE, STRIDE = 16, 32, 2  # tiny_3d.yaml: 16 levels of 32x32, level_downsample 2


@pytest.fixture(scope="module")
def run_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 3D run: `train vqvae` then `train prior` on tiny_3d.yaml (seconds each)."""
    run = tmp_path_factory.mktemp("run3d") / "run"
    common = ("--config", str(TINY_3D), "--accelerator", "cpu")
    done = brainvq_cli("train", "vqvae", "--data", "demo", "--out", str(run), *common)
    assert done.returncode == 0, done.stderr[-3000:]
    done = brainvq_cli("train", "prior", "--run", str(run), "--accelerator", "cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    return run


def test_metrics_score_three_planes_at_the_3d_rate(run_3d: Path) -> None:
    vqvae = json.loads((run_3d / "metrics.json").read_text(encoding="utf-8"))["vqvae"]
    # 8 x 8 x 8 codes of 16 codes (4 bits) for 16 x 32 x 32 voxels
    assert vqvae["bits_per_voxel"] == pytest.approx(8 * 8 * 8 * 4 / (16 * 32 * 32))
    assert vqvae["n_volumes"] == 1 and vqvae["n_images"] == LEVELS
    assert vqvae["planes"]["coronal"]["n_images"] == SIZE
    assert vqvae["planes"]["sagittal"]["n_images"] == SIZE
    assert vqvae["ssim"] == vqvae["planes"]["axial"]["ssim"]
    assert (run_3d / "vqvae" / "frames" / "epoch_001.png").is_file()


def test_codes_are_latent_levels_with_their_subjects(run_3d: Path) -> None:
    models = load_run_models(run_3d)
    assert models.dims == 3 and models.latent_levels == LEVELS // STRIDE
    assert models.n_levels == LEVELS
    sliceset = run_slices(load_run(run_3d), progress=False)
    volumes = subject_volumes(sliceset, "train", STRIDE)
    codes = load_codes(run_3d / "codes", "train")
    assert codes.codes.shape == (len(volumes) * LEVELS // STRIDE, SIZE // 4, SIZE // 4)
    assert codes.level.tolist() == list(range(LEVELS // STRIDE)) * len(volumes)
    assert list(codes.subject[:: LEVELS // STRIDE]) == list(volumes.subject)
    encoded = encode_images(models.vqvae.model, sliceset.images[volumes.rows[1]][None])
    assert np.array_equal(encoded[0], codes.codes[LEVELS // STRIDE : 2 * LEVELS // STRIDE])


def test_a_volume_round_trips_through_the_python_api(run_3d: Path) -> None:
    sliceset = run_slices(load_run(run_3d), progress=False)
    volume = sliceset.images[subject_volumes(sliceset, "test", STRIDE).rows[0]][None]
    codes = brainvq.encode(run_3d, volume)
    assert codes.shape == (1, LEVELS // STRIDE, SIZE // 4, SIZE // 4)
    decoded = brainvq.decode(run_3d, codes)
    assert decoded.shape == volume.shape and decoded.dtype == np.uint8
    model = load_run_models(run_3d).vqvae.model
    assert np.array_equal(decoded, decode_codes(model, codes))
    with pytest.raises(ValueError, match=r"takes volumes \(S, D, H, W\)"):
        brainvq.encode(run_3d, volume[0])


def test_subjects_are_drawn_by_latent_level_and_decoded_whole(run_3d: Path) -> None:
    models = load_run_models(run_3d)
    codes, images, levels = generate_subjects(models, 2, progress=False)
    assert codes.shape == (2, LEVELS // STRIDE, SIZE // 4, SIZE // 4)
    assert images.shape == (2, LEVELS, SIZE, SIZE)
    assert levels.tolist() == list(range(LEVELS))
    assert np.array_equal(images, decode_codes(models.vqvae.model, codes))
    again = sample_subjects(models.prior.model, 2, models.latent_hw, seed=0)
    assert torch.equal(torch.as_tensor(codes), again)
    upper = generate_subjects(models, 1, first_level=8, progress=False)
    assert upper[0].shape[1] == 4 and upper[2].tolist() == list(range(8, 16))
    with pytest.raises(ValueError, match="first_level: a 3D run draws 2 slices a latent level"):
        generate_subjects(models, 1, first_level=3, progress=False)


def test_sample_subjects_writes_whole_volumes(run_3d: Path, tmp_path: Path) -> None:
    out = tmp_path / "subjects"
    done = brainvq_cli("sample", "--run", str(run_3d), "--subjects", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    volumes = sorted(out.glob("*.nii.gz"))
    assert len(volumes) == 2
    nib = pytest.importorskip("nibabel")
    image = nib.load(volumes[0])
    assert image.shape[2] == LEVELS


def test_evaluate_gives_the_three_planes(run_3d: Path) -> None:
    done = brainvq_cli("evaluate", "--run", str(run_3d))
    assert done.returncode == 0, done.stderr[-3000:]
    vqvae = json.loads((run_3d / "metrics.json").read_text(encoding="utf-8"))["vqvae"]
    assert set(vqvae["planes"]) == {"axial", "coronal", "sagittal"}


@pytest.mark.parametrize(
    "args",
    [
        ("sample", "--run", "{run}", "--n", "2", "--out", "{out}"),
        ("complete", "--run", "{run}", "--input", "{png}", "--keep-rows", "2", "--out", "{out}"),
    ],
    ids=["sample-n", "complete"],
)
def test_2d_workflows_refuse_a_3d_run_in_one_line(
    run_3d: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    png = tmp_path / "case_001_slice_3.nii.png"
    save_png(png, np.zeros((SIZE, SIZE), dtype=np.uint8))
    values = {"{run}": str(run_3d), "{png}": str(png), "{out}": str(tmp_path / "out")}
    done = brainvq_cli(*(values.get(a, a) for a in args))
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "works on 2D runs" in lines[0] and str(run_3d) in lines[0], lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
