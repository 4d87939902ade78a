"""VQVAE: shapes, the index API, gradients through the quantizer, training on a tiny batch,
and one test per config validation error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brainvq.config import ConfigError, from_dict, to_dict
from brainvq.models.vqvae import VQVAE, VQVAEConfig

pytestmark = pytest.mark.usefixtures("single_thread")


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    return {k: v.detach().clone() for k, v in tensors.items()}


@pytest.mark.parametrize(
    ("downsample", "channels", "latent"), [(4, (8, 16), 8), (8, (8, 16, 16), 4)]
)
def test_shapes(
    make_config, images, downsample: int, channels: tuple[int, ...], latent: int
) -> None:
    config = make_config(downsample=downsample, channels=channels)
    model = VQVAE(config)
    x_hat, vq = model(images)
    assert x_hat.shape == images.shape
    assert bool(torch.isfinite(x_hat).all())
    assert vq.indices.shape == (4, latent, latent) and config.latent_size == latent
    assert vq.quantized.shape == (4, config.code_dim, latent, latent)
    codes = model.encode(images)
    assert codes.shape == (4, latent, latent) and codes.dtype == torch.int64
    assert model.decode_indices(codes).shape == images.shape


@pytest.mark.parametrize("norm", ["none", "group", "batch"])
def test_decode_of_encode_equals_eval_forward(make_config, images, norm: str) -> None:
    torch.manual_seed(0)
    model = VQVAE(make_config(norm=norm, dropout=0.1))
    model.train()
    for _ in range(2):  # k-means init, EMA steps and batch statistics first
        model(images)
    model.eval()
    x_hat, vq = model(images)
    codes = model.encode(images)
    assert torch.equal(codes, vq.indices)
    assert torch.equal(model.decode_indices(codes), x_hat)


def test_gradients_reach_the_encoder_through_the_quantizer(make_config, images) -> None:
    model = VQVAE(make_config())
    x_hat, _ = model(images)
    F.mse_loss(x_hat, images).backward()  # reconstruction only: no commitment term
    first_conv = model.encoder.layers[0]
    assert first_conv.weight.grad is not None
    assert float(first_conv.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_encode_and_decode_change_nothing_even_in_train_mode(make_config, images, norm) -> None:
    model = VQVAE(make_config(norm=norm, dropout=0.5, dead_code_steps=1))
    model.train()
    before = snapshot(model)
    first = model.encode(images)
    second = model.encode(images)
    model.decode_indices(first)
    after = snapshot(model)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), f"{key} changed"
    assert int(model.quantizer.initialized) == 0
    assert torch.equal(first, second), "encode is not deterministic (dropout active?)"
    assert all(m.training for m in model.modules()), "train mode was not restored"


@pytest.mark.parametrize("update", ["ema", "loss"])
def test_training_reduces_the_loss(make_config, make_images, update: str) -> None:
    torch.manual_seed(0)
    x = make_images(8, seed=1)
    model = VQVAE(make_config(update=update))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        x_hat, vq = model(x)
        loss = F.mse_loss(x_hat, x) + vq.loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses


def test_state_dict_round_trip(make_config, images) -> None:
    torch.manual_seed(0)
    config = make_config(norm="batch")
    model = VQVAE(config).train()
    model(images)
    copy = VQVAE(from_dict(VQVAEConfig, to_dict(config)))
    copy.load_state_dict(model.state_dict())
    model.eval(), copy.eval()
    assert torch.equal(model.encode(images), copy.encode(images))
    assert torch.equal(model(images)[0], copy(images)[0])


def test_config_round_trips_through_a_dict(make_config) -> None:
    config = make_config(downsample=8, channels=(8, 16, 32), norm="group")
    assert from_dict(VQVAEConfig, to_dict(config)) == config
    VQVAEConfig().validate()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("codebook_size", 1),
        ("image_size", 30),
        ("downsample", 2),
        ("channels", [8, 16, 32]),
        ("channels", [8, 0]),
        ("update", "gumbel"),
        ("norm", "layer"),
        ("dropout", 1.0),
        ("decay", 1.0),
        ("beta", -0.1),
        ("ssim_weight", -0.5),
        ("code_dim", 0),
        ("in_channels", 0),
        ("res_blocks", -1),
        ("res_channels", 0),
        ("dead_code_steps", -1),
        ("kmeans_iters", 0),
        ("restart_buffer", 0),
        ("restart_noise", -1.0),
        ("eps", 0.0),
    ],
)
def test_config_errors_name_the_key(make_config, key: str, value: object) -> None:
    data = to_dict(make_config())
    data[key] = value
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        from_dict(VQVAEConfig, data)


def test_model_validates_its_config(make_config) -> None:
    with pytest.raises(ConfigError, match="^codebook_size: "):
        VQVAE(make_config(codebook_size=1))


def test_wrong_image_shape_is_an_error(make_config) -> None:
    model = VQVAE(make_config())
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="multiples of 4"):
        model.encode(torch.zeros(2, 1, 30, 30))
