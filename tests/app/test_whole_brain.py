"""A whole-brain run on fixture volumes, through the commands: it trains on every level from the
brain stem to the vertex, says its range and coverage in RUN/space.json, evaluates (the level
error in mm), samples a level far below OASIS's band and whole subjects over every level, and
reconstructs a scan; a range the model cannot take is one line, exit 2, before anything is
written."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from data.files import brain_scan
from PIL import Image
from tiny import TINY_CONFIG

from brainvq.app.cli import main
from brainvq.app.run_data import run_space
from brainvq.data.space.frame import oasis_frame
from brainvq.data.splits import assign_splits
from brainvq.run import packaged_config
from brainvq.run_config import load_run_config

WHOLE = list(load_run_config(packaged_config("whole_brain")).data.z_range_mm)


def whole_brain_config(path: Path, **data: object) -> Path:
    """The tiny test config over the whole-brain config's range (and `data` keys), its prior
    given the slice below as the whole-brain config's is."""
    doc = yaml.safe_load(TINY_CONFIG.read_text(encoding="utf-8"))
    doc["data"].update({"z_range_mm": WHOLE, **data})
    doc["prior"]["neighbour"] = "previous"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def volume_names() -> list[str]:
    """Five scan names that the stable split sends to train (3), validate and test (1 each)."""
    split = assign_splits([f"head{i}" for i in range(100)])
    wanted = {"train": 3, "validate": 1, "test": 1}
    return [n for s in wanted for n in [k for k, v in split.items() if v == s][: wanted[s]]]


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("whole")
    for i, name in enumerate(volume_names()):
        brain_scan(root / "heads" / f"{name}.nii.gz", voxel_mm=6.0, seed=20 + i)
    config = whole_brain_config(root / "whole.yaml")
    run = root / "run"
    argv = ["train", "all", "--data", str(root / "heads"), "--config", str(config)]
    assert main([*argv, "--out", str(run), "--accelerator", "cpu"]) == 0
    return run


def test_a_whole_brain_run_trains_on_every_level_and_says_its_coverage(whole_run: Path) -> None:
    run_space(whole_run)  # RUN/space.json, made on first use
    space = json.loads((whole_run / "space.json").read_text(encoding="utf-8"))
    n = space["frame"]["n_levels"]
    assert n == 152
    assert space["coverage"]["levels"] == n
    assert space["coverage"]["template_brain_share"] >= 0.999
    low, high = space["coverage"]["z_mm"]
    assert low < -70 and high > 82  # the brain stem to above the vertex
    metrics = json.loads((whole_run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["prior"]["level_error_mm"] >= 0
    assert metrics["prior"]["level_error_mm_real"] >= 0
    assert (whole_run / "report.html").is_file()


def test_samples_far_below_the_band_and_whole_subjects(whole_run: Path, tmp_path: Path) -> None:
    band_bottom = -2.0  # OASIS's lowest level is at z -2.7 mm
    frame = run_space(whole_run).frame
    z = frame.level_z(np.arange(frame.n_levels))
    cerebellum = int(np.argmin(np.abs(z + 45.0)))  # 45 mm below the band's bottom
    assert z[cerebellum] < band_bottom - 40
    argv = ["sample", "--run", str(whole_run), "--level", str(cerebellum), "--n", "2"]
    assert main([*argv, "--out", str(tmp_path / "low")]) == 0
    assert list((tmp_path / "low").glob("*.png"))
    argv = ["sample", "--run", str(whole_run), "--subjects", "1"]
    assert main([*argv, "--out", str(tmp_path / "subjects")]) == 0
    volumes = list((tmp_path / "subjects").rglob("*.nii.gz"))
    assert volumes
    assert nib.load(volumes[0]).shape[2] == len(z)  # every level, brain stem to vertex
    argv = ["sample", "--run", str(whole_run), "--levels", "all", "--n", "1"]
    assert main([*argv, "--out", str(tmp_path / "all")]) == 0
    assert len(list((tmp_path / "all").glob("sample_*_level_*.png"))) == len(z)
    with Image.open(tmp_path / "all" / "grid.png") as grid:
        assert grid.height == 32 * (32 + 12 + 2) + 2  # 32 rows (32 px, label, pad), not 152


def test_reconstructs_a_scan_over_the_whole_brain(whole_run: Path, tmp_path: Path) -> None:
    scan = tmp_path / "scan.nii.gz"
    brain_scan(scan, voxel_mm=6.0, seed=99)
    argv = ["reconstruct", "--model", str(whole_run), "--input", str(scan)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    written = sorted((tmp_path / "out").rglob("*.nii.gz"))
    assert written, sorted(p.name for p in (tmp_path / "out").rglob("*"))


def test_a_range_the_model_cannot_take_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    band = oasis_frame()
    cases = [
        (whole_brain_config(tmp_path / "below.yaml", z_range_mm=[-120.0, -80.0]), "outside"),
        (whole_brain_config(tmp_path / "above.yaml", z_range_mm=[90.0, 110.0]), "no brain"),
    ]
    odd = whole_brain_config(tmp_path / "odd.yaml", z_range_mm=[0.0, 2.5 * band.level_spacing_mm])
    doc = yaml.safe_load(odd.read_text(encoding="utf-8"))
    doc["vqvae"].update(dims=3, level_downsample=2)
    odd.write_text(yaml.safe_dump(doc), encoding="utf-8")
    cases.append((odd, "3 levels, expected a positive multiple of the 3D VQ-VAE's level stride 2"))
    for config, message in cases:
        run = tmp_path / config.stem
        argv = ["train", "vqvae", "--data", "demo", "--config", str(config), "--out", str(run)]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not (run / "config.yaml").exists()
