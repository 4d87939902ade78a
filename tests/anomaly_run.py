"""A tiny trained run for the anomaly tests (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from tiny import TINY_CONFIG

from brainvq.app.cli import main


def train_tiny_run(root: Path) -> Path:
    """`brainvq train vqvae` then `brainvq train prior` on the tiny demo config (32x32 slices,
    8x8 codes, a conditional prior, a level classifier), for 8 and 3 epochs: after one the
    VQ-VAE still uses one code for everything, and no map could tell a lesion from tissue.
    About 10 s."""
    run = root / "tiny"
    argv = ["train", "vqvae", "--data", "demo", "--config", str(TINY_CONFIG), "--out", str(run)]
    assert main([*argv, "--epochs", "8"]) == 0
    assert main(["train", "prior", "--run", str(run), "--epochs", "3"]) == 0
    return run


def uncalibrated_copy(run: Path, folder: Path) -> Path:
    """A copy of `run` under `folder` without any anomaly calibration."""
    import shutil

    from brainvq.run import RunLayout

    copy = folder / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(RunLayout(copy).anomaly, ignore_errors=True)
    return copy


def plant_disc(image: np.ndarray, centre: tuple[int, int], radius: float, value: int) -> np.ndarray:
    """A copy of image (H, W) uint8 with a uniform disc of `value`: a simple lesion."""
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    out = image.copy()
    out[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2] = value
    return out


def tree_hashes(root: Path) -> dict[str, str]:
    """{path relative to root: SHA-256 of its bytes} of every file under root (links as files)."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
