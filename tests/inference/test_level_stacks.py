"""A stack of frame levels through a 3D VQ-VAE: padded to whole latent levels of the frame,
coded whole, cropped back; its codes file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import small_3d_vqvae_config

from brainvq.inference.codes import decode_codes, encode_images
from brainvq.inference.level_stacks import (
    CodeVolume,
    code_cells,
    encode_stack,
    pad_stack,
    reconstruct_stack,
    write_code_volumes,
)
from brainvq.models.vqvae import VQVAE

SIZE, STRIDE = 32, 2


@pytest.fixture(scope="module")
def model() -> VQVAE:
    """An untrained 3D VQ-VAE (level stride 2) whose codebook was initialised on random
    volumes, so that different levels get different codes."""
    torch.manual_seed(0)
    config = small_3d_vqvae_config()
    vqvae = VQVAE(config)
    with torch.no_grad():
        vqvae.train()(torch.rand(2, 1, 4, SIZE, SIZE))  # the k-means codebook init
    return vqvae.eval()


def stack(depth: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (depth, SIZE, SIZE), dtype=np.uint8)


@pytest.mark.parametrize(
    ("first", "depth", "before", "padded", "first_latent"),
    [(0, 4, 0, 4, 0), (0, 5, 0, 6, 0), (3, 5, 1, 6, 1), (3, 4, 1, 6, 1), (7, 1, 1, 2, 3)],
)
def test_a_stack_is_padded_to_whole_latent_levels_of_the_frame(
    first: int, depth: int, before: int, padded: int, first_latent: int
) -> None:
    images = stack(depth)
    out = pad_stack(images, first, STRIDE)
    assert (out.before, out.depth, out.first_latent) == (before, depth, first_latent)
    assert out.volume.shape == (padded, SIZE, SIZE)
    assert np.array_equal(out.crop(out.volume), images)
    assert (out.volume[:before] == images[0]).all()  # the border slices repeated
    assert (out.volume[before + depth :] == images[-1]).all()


def test_an_empty_stack_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one slice"):
        pad_stack(stack(0), 0, STRIDE)


def test_a_stack_is_reconstructed_whole_and_cropped_back(model: VQVAE) -> None:
    images = stack(5, seed=1)  # frame levels 3..7: padded to 2..7
    recon, codes, first_latent = reconstruct_stack(model, images, 3)
    assert recon.shape == images.shape and recon.dtype == np.uint8
    assert codes.shape == (3, SIZE // 4, SIZE // 4) and first_latent == 1
    padded = np.concatenate([images[:1], images])  # (6, H, W)
    expected = encode_images(model, padded[None])
    assert np.array_equal(codes, expected[0])
    assert np.array_equal(recon, decode_codes(model, expected)[0][1:6])
    assert np.array_equal(encode_stack(model, images, 3)[0], codes)


def test_code_cells_give_each_voxel_its_latent_cell(model: VQVAE) -> None:
    images = stack(5, seed=2)
    codes, _ = encode_stack(model, images, 3)  # latent levels of frame levels 2-3, 4-5, 6-7
    cells = code_cells(model, codes, 3, 5)  # (5, H, W): frame levels 3..7
    assert cells.shape == images.shape
    assert np.array_equal(cells[0, ::4, ::4], codes[0])  # level 3: latent level 1 (first here)
    assert np.array_equal(cells[1, 4:8, 8:12], np.full((4, 4), codes[1, 1, 2]))  # level 4
    assert np.array_equal(cells[4, ::4, ::4], codes[2])  # level 7


def test_a_codes_file_holds_code_volumes(model: VQVAE, tmp_path: Path) -> None:
    a = encode_stack(model, stack(4, seed=3), 0)[0]  # (2, h, w)
    b = encode_stack(model, stack(5, seed=4), 3)[0]  # (3, h, w)
    volumes = [CodeVolume("a.nii.gz", 0, 2), CodeVolume("sub/b.nii.gz", 1, 3)]
    path = write_code_volumes(tmp_path / "codes.npz", volumes, iter([a, b]), STRIDE, SIZE // 4)
    with np.load(path) as f:
        assert int(f["dims"]) == 3 and int(f["level_stride"]) == STRIDE
        assert f["codes"].dtype == np.int16 and f["codes"].shape == (5, SIZE // 4, SIZE // 4)
        assert f["names"].tolist() == ["a.nii.gz"] * 2 + ["sub/b.nii.gz"] * 3
        assert f["levels"].tolist() == [0, 1, 1, 2, 3]
        assert np.array_equal(f["codes"][f["names"] == "sub/b.nii.gz"], b)
