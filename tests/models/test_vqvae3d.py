"""The 3D VQ-VAE (VQVAEConfig.dims 3): shapes, the index API, training, bundles, bad input."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from brainvq.io.bundle import CONFIG_FILE, load_vqvae, save_bundle
from brainvq.models.vqvae import VQVAE, VQVAEConfig
from tests.models.conftest import blob_images, tiny_config


def blob_volumes(n: int, depth: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    """n smooth volumes (n, 1, depth, size, size) in [0, 1]: each level a blob image whose
    brightness falls off away from the middle level, so neighbouring levels are alike."""
    images = blob_images(n, size, seed)  # (n, 1, size, size)
    fall = torch.linspace(-1, 1, depth).abs().neg().add(1.2).clamp(0, 1)  # (depth,)
    return images[:, :, None] * fall[None, None, :, None, None]  # (n, 1, depth, size, size)


def tiny_3d(**overrides: object) -> VQVAEConfig:
    return tiny_config(**{"dims": 3, **overrides})


@pytest.mark.parametrize(
    ("level_downsample", "downsample", "channels"),
    [(1, 4, (8, 16)), (2, 4, (8, 16)), (4, 4, (8, 16)), (2, 8, (8, 8, 16))],
)
def test_shapes_follow_the_strides(level_downsample, downsample, channels, single_thread) -> None:
    config = tiny_3d(level_downsample=level_downsample, downsample=downsample, channels=channels)
    model = VQVAE(config)
    x = blob_volumes(2, depth=8)
    x_hat, vq = model(x)
    d, h = 8 // level_downsample, 32 // downsample
    assert x_hat.shape == x.shape
    assert vq.indices.shape == (2, d, h, h)
    assert vq.quantized.shape == (2, config.code_dim, d, h, h)
    assert model.encode(x).shape == (2, d, h, h)
    assert config.latent_depth(8) == d


@pytest.mark.parametrize("norm", ["none", "group", "batch"])
def test_decode_of_encode_equals_eval_forward(norm, single_thread) -> None:
    torch.manual_seed(0)
    model = VQVAE(tiny_3d(norm=norm))
    x = blob_volumes(3)
    model.train()
    model(x)  # k-means init and batch-norm statistics
    model.eval()
    x_hat, vq = model(x)
    codes = model.encode(x)
    assert torch.equal(codes, vq.indices)
    assert torch.equal(model.decode_indices(codes), x_hat.detach())


def test_the_3d_latent_is_quantized_like_the_2d_map_of_its_levels(single_thread) -> None:
    """Levels stacked along the rows: each level's codes are the nearest codes of its own
    latent vectors, in order."""
    torch.manual_seed(0)
    model = VQVAE(tiny_3d()).eval()
    x = blob_volumes(2)
    z = model.encoder(x)  # (2, code_dim, d, h, w)
    codes = model.encode(x)
    for level in range(z.shape[2]):
        assert torch.equal(codes[:, level], model.quantizer.lookup(z[:, :, level]))


def test_training_reduces_the_loss(single_thread) -> None:
    torch.manual_seed(0)
    x = blob_volumes(4, seed=1)
    model = VQVAE(tiny_3d())
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        x_hat, vq = model(x)
        loss = F.mse_loss(x_hat, x) + vq.loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses


def test_bundle_round_trip_carries_dims(tmp_path, single_thread) -> None:
    torch.manual_seed(0)
    config = tiny_3d(level_downsample=4)
    model = VQVAE(config).train()
    x = blob_volumes(2)
    model(x)
    save_bundle(tmp_path / "VQVAE_Model", model.eval(), config, "vqvae")
    doc = json.loads((tmp_path / "VQVAE_Model" / CONFIG_FILE).read_text(encoding="utf-8"))
    assert doc["config"]["dims"] == 3 and doc["config"]["level_downsample"] == 4
    bundle = load_vqvae(tmp_path / "VQVAE_Model")
    assert bundle.config == config
    assert torch.equal(bundle.model.encode(x), model.encode(x))


def test_a_2d_bundle_without_dims_loads_as_2d(tmp_path, single_thread) -> None:
    """Bundles written before `dims` existed have no such key: they are 2D models."""
    config = tiny_config()
    model = VQVAE(config).eval()
    folder = save_bundle(tmp_path / "VQVAE_Model", model, config, "vqvae")
    doc = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    del doc["config"]["dims"], doc["config"]["level_downsample"]
    (folder / CONFIG_FILE).write_text(json.dumps(doc), encoding="utf-8")
    bundle = load_vqvae(folder)
    assert bundle.config.dims == 2
    images = blob_images(2)
    assert torch.equal(bundle.model.encode(images), model.encode(images))


@pytest.mark.parametrize("depth", [7, 1])
def test_levels_not_divisible_by_the_level_stride_are_refused(depth) -> None:
    model = VQVAE(tiny_3d(level_downsample=2))
    with pytest.raises(ValueError, match="multiple of the level stride 2"):
        model.encode(torch.rand(1, 1, depth, 32, 32))
    with pytest.raises(ValueError, match=f"{depth} levels does not fit"):
        model.config.latent_depth(depth)


def test_a_volume_too_small_in_plane_is_refused() -> None:
    model = VQVAE(tiny_3d())
    with pytest.raises(ValueError, match=r"H and W multiples of 4, got \(1, 1, 8, 30, 30\)"):
        model.encode(torch.rand(1, 1, 8, 30, 30))


def test_slices_given_to_a_3d_model_and_volumes_to_a_2d_one_are_refused() -> None:
    with pytest.raises(ValueError, match=r"expected volumes of shape \(B, 1, D, H, W\)"):
        VQVAE(tiny_3d()).encode(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, H, W\)"):
        VQVAE(tiny_config()).encode(torch.rand(2, 1, 8, 32, 32))
    with pytest.raises(ValueError, match=r"decodes indices of shape \(B, d, h, w\)"):
        VQVAE(tiny_3d()).decode_indices(torch.zeros(2, 8, 8, dtype=torch.long))


@pytest.mark.parametrize(
    ("key", "value"), [("dims", 4), ("level_downsample", 3), ("level_downsample", 8)]
)
def test_config_errors_name_the_key(key, value) -> None:
    with pytest.raises(ValueError, match=key):
        tiny_3d(**{key: value}).validate()
