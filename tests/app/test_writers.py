"""Writing results to folders: every input slice gets its own output, named after it.

The bug this guards against: every slice of a NIfTI volume (and every file of the same name in
different subfolders) was written to one PNG, so all but one reconstruction were lost."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from data.files import brain_scan, write_png

from brainvq.app.cli import main
from brainvq.app.writers import output_name, output_names, reconstruct_to_folder
from brainvq.io.bundle import save_bundle
from brainvq.models.vqvae import VQVAE, VQVAEConfig

SIZE = 32


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VQ-VAE bundle at 32x32 (untrained: naming does not depend on training)."""
    torch.manual_seed(0)
    config = VQVAEConfig(
        image_size=SIZE,
        channels=(8, 16),
        res_blocks=1,
        res_channels=8,
        code_dim=8,
        codebook_size=16,
    )
    model = VQVAE(config)
    with torch.no_grad():  # one training-mode pass: the k-means codebook init, so that
        model.train()(torch.rand(8, 1, SIZE, SIZE))  # different slices get different codes
    folder = tmp_path_factory.mktemp("model") / "VQVAE_Model"
    return save_bundle(folder, model.eval(), config, kind="vqvae")


def rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_nifti_volume_is_reconstructed_on_every_covered_level_and_in_its_own_space(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path / "cache"))
    volume, scan = brain_scan(tmp_path / "vols" / "subject_a.nii.gz", "LPS", seed=2)
    out = tmp_path / "out"
    argv = ["reconstruct", "--model", str(model_dir), "--input", str(volume), "--out", str(out)]
    assert main(argv) == 0
    pngs = sorted(p.name for p in out.glob("subject_a_level_*.png"))
    assert pngs == sorted(f"subject_a_level_{k}.png" for k in range(32))
    manifest = rows(out)
    assert len(manifest) == 32 and len({r["output"] for r in manifest}) == 32
    for r in manifest:  # each output names its input slice: the volume and the frame level
        assert r["input"] == f"subject_a.nii.gz#level{r['level']}"
        assert r["output"] == f"subject_a_level_{r['level']}.png"
    recon = nib.load(str(out / "subject_a_reconstruction.nii.gz"))
    assert recon.shape == scan.image.shape
    np.testing.assert_allclose(recon.affine, scan.image.affine, atol=1e-4)
    values = recon.get_fdata()
    original = np.asarray(scan.image.dataobj, dtype=np.float64)
    both = np.isfinite(values) & scan.brain
    # in the scan's own intensity units (this untrained model's output is not the scan)
    assert both.sum() > 0.2 * scan.brain.sum()  # the band of 32 levels: about a third
    assert 0 <= np.median(values[both]) <= original.max()
    assert (out / "subject_a_registration.png").is_file()


def test_encode_writes_code_maps_and_a_code_volume(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path / "cache"))
    volume, scan = brain_scan(tmp_path / "v.nii.gz", "LAS", seed=3)
    out = tmp_path / "codes"
    assert (
        main(["encode", "--model", str(model_dir), "--input", str(volume), "--out", str(out)]) == 0
    )
    with np.load(out / "codes.npz") as f:
        codes, levels = f["codes"], f["levels"]
    assert codes.ndim == 3 and levels.tolist() == list(range(32))
    in_scan = nib.load(str(out / "v_codes.nii.gz"))
    assert in_scan.shape == scan.image.shape and in_scan.get_data_dtype() == np.int16
    data = np.asarray(in_scan.dataobj)
    assert set(np.unique(data[data >= 0])) <= set(np.unique(codes))


def test_nested_folders_with_repeated_names_keep_their_paths(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "scans"
    rng = np.random.default_rng(0)
    inputs = ["site1/sub1/t1.png", "site1/sub2/t1.png", "site2/sub1/t1.png", "t1.png"]
    for name in inputs:
        write_png(src / name, rng.integers(0, 255, (64, 64), dtype=np.uint8))
    out = tmp_path / "out"
    written, grid = reconstruct_to_folder(model_dir, src, out)
    assert grid == out / "grid.png" and out / "manifest.csv" in written
    assert sorted(str(p.relative_to(out)) for p in out.rglob("t1.png")) == sorted(inputs)
    assert {r["output"]: r["input"] for r in rows(out)} == {n: n for n in inputs}


def test_names_that_would_clash_are_told_apart() -> None:
    assert output_name("a/b/case_1.png", -1) == "a/b/case_1.png"
    assert output_name("x.jpg", -1) == "x.png"
    assert output_name("vol/T1.nii.gz#level12", 12) == "vol/T1_level_12.png"
    assert output_name("T1.nii#level3", 3) == "T1_level_3.png"
    names = output_names(["a.png", "a.jpg", "b.png"], [-1, -1, -1])
    assert names == ["a.png.png", "a.jpg.png", "b.png"] and len(set(names)) == 3
    with pytest.raises(ValueError, match="grid.png"):
        output_names(["grid.png"], [-1])
