"""Reconstruction of volumes on three planes (brainvq.evaluation.volume_reconstruction)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from brainvq.data.demo import build_demo
from brainvq.data.planes import plane_slices
from brainvq.evaluation.reconstruction import evaluate_vqvae
from brainvq.evaluation.volume_reconstruction import bits_per_voxel, evaluate_volumes
from brainvq.io.bundle import Bundle
from brainvq.models.vqvae import VQVAE, VQVAEConfig


@pytest.fixture(scope="module")
def demo():
    return build_demo(size=32, n_levels=16, subjects=(1, 2, 1), show_progress=False, workers=1)


def _bundle(**fields) -> Bundle:
    torch.manual_seed(0)
    config = VQVAEConfig(
        image_size=32, channels=(8, 16), res_channels=8, code_dim=8, codebook_size=16, **fields
    )
    return Bundle(model=VQVAE(config).eval(), config=config, meta={}, path=Path("VQVAE_Model"))


def test_a_2d_model_scored_by_volume_agrees_with_its_slice_evaluation(demo) -> None:
    bundle = _bundle()
    shown = np.arange(4)
    by_volume, arrays = evaluate_volumes(bundle, demo, "validate", shown)
    by_slice, slice_arrays = evaluate_vqvae(bundle, demo, "validate", n_shown=4)
    assert by_volume["ssim"] == pytest.approx(by_slice["ssim"], abs=1e-6)
    assert by_volume["mae"] == pytest.approx(by_slice["mae"], abs=1e-6)
    assert by_volume["bits_per_voxel"] == by_slice["bits_per_pixel"] == 8 * 8 * 4 / (32 * 32)
    assert np.allclose(arrays["ssim"], slice_arrays["ssim"], atol=1e-6)
    assert by_volume["planes"]["coronal"]["n_images"] == 2 * 32


def test_a_3d_model_is_scored_on_every_plane_of_its_volumes(demo) -> None:
    bundle = _bundle(dims=3, level_downsample=2)
    metrics, arrays = evaluate_vqvae(bundle, demo, "validate", n_shown=3)
    assert metrics["n_volumes"] == 2 and metrics["n_images"] == 32
    assert metrics["bits_per_voxel"] == bits_per_voxel((8, 8, 8), 16, (16, 32, 32)) == 0.125
    for plane, n in (("axial", 32), ("coronal", 64), ("sagittal", 64)):
        assert metrics["planes"][plane]["n_images"] == n
        assert -1 <= metrics["planes"][plane]["ssim"] <= 1
    rows = demo.split_rows("validate")
    assert np.array_equal(arrays["originals"], demo.images[rows[arrays["shown"]]])


def test_plane_slices_cut_the_axes_the_docstring_names() -> None:
    volume = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # (D, H, W)
    assert plane_slices(volume, "axial").shape == (2, 3, 4)
    assert plane_slices(volume, "coronal").shape == (4, 2, 3)
    assert plane_slices(volume, "sagittal").shape == (3, 2, 4)
    assert np.array_equal(plane_slices(volume, "coronal")[1], volume[:, :, 1])
    with pytest.raises(ValueError, match="unknown plane 'oblique'"):
        plane_slices(volume, "oblique")
