"""Training a 3D VQ-VAE on data it cannot take: one clear line and exit 2, nothing trained."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from tiny import TINY_3D, train_cmd


def train_with(tmp_path: Path, changes: dict) -> subprocess.CompletedProcess:
    config = yaml.safe_load(TINY_3D.read_text(encoding="utf-8"))
    for section, values in changes.items():
        config.setdefault(section, {}).update(values)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return subprocess.run(
        train_cmd(tmp_path / "run", config=path),
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=600,
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # 12 levels do not divide into latent levels of 8
        (
            {
                "data": {"n_levels": 12},
                "vqvae": {"level_downsample": 8, "downsample": 8, "channels": [8, 8, 16]},
            },
            "12 levels, not a multiple of the 3D VQ-VAE's level stride 8",
        ),
        # a volume of one level is too thin for a level stride of 2
        ({"data": {"n_levels": 1}}, "1 levels, not a multiple of the 3D VQ-VAE's level stride 2"),
        ({"vqvae": {"level_downsample": 3}}, "level_downsample"),
        ({"adversarial": {"enabled": True}}, "a 3D VQ-VAE (vqvae.dims: 3) trains without it"),
    ],
    ids=["levels-not-divisible", "volume-too-thin", "bad-stride", "adversarial"],
)
def test_bad_3d_input_is_one_line_and_exit_2(tmp_path: Path, changes: dict, message: str) -> None:
    done = train_with(tmp_path, changes)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and message in lines[0], done.stderr[-3000:]
    assert not (tmp_path / "run" / "vqvae" / "VQVAE_Model").exists()
