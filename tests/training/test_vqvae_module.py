"""The VQ-VAE training loss: reconstruction (MSE + ssim_weight x (1 - SSIM)) + VQ terms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brainvq.metrics import ssim
from brainvq.models.vqvae import VQVAEConfig
from brainvq.run_config import TrainConfig
from brainvq.training.vqvae_module import VQVAEModule


def smooth_batch(seed: int = 0) -> torch.Tensor:
    """(4, 1, 32, 32) float in [0, 1] with some structure."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 1, 8, 8, generator=g)
    return F.interpolate(x, size=32, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("weight", [0.0, 0.3])
def test_reconstruction_loss_is_mse_plus_weighted_ssim(weight: float) -> None:
    torch.manual_seed(0)
    config = VQVAEConfig(
        image_size=32,
        channels=(8, 16),
        res_channels=8,
        code_dim=8,
        codebook_size=16,
        ssim_weight=weight,
        restart_buffer=64,
    )
    module = VQVAEModule(config, TrainConfig(), total_steps=1).eval()
    x = smooth_batch()
    losses, x_hat, vq = module.losses(x)
    mse = F.mse_loss(x_hat, x)
    expected = mse + weight * (1 - ssim(x_hat, x).mean())
    torch.testing.assert_close(losses["mse"], mse)
    torch.testing.assert_close(losses["recon"], expected)
    torch.testing.assert_close(losses["loss"], expected + vq.loss)
    assert (losses["recon"] > losses["mse"]) == (weight > 0)


def test_channels_last_changes_the_layout_not_the_losses() -> None:
    """TrainConfig.channels_last puts the conv weights in channels_last; the losses and the
    gradients match the contiguous layout's from the same initial weights."""
    config = VQVAEConfig(
        image_size=32, channels=(8, 16), res_channels=8, code_dim=8, codebook_size=16
    )
    modules = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        modules.append(VQVAEModule(config, TrainConfig(channels_last=channels_last)).eval())
    plain, fast = modules
    weights = [p for p in fast.model.parameters() if p.dim() == 4]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert not all(
        p.is_contiguous(memory_format=torch.channels_last)
        for p in plain.model.parameters()
        if p.dim() == 4
    )
    x = smooth_batch(1)
    results = []
    for module in (plain, fast):
        losses, _, _ = module.losses(x)
        losses["loss"].backward()
        grads = [p.grad.clone() for p in module.model.parameters() if p.grad is not None]
        results.append((losses, grads))
    for name in ("loss", "mse", "recon", "vq"):
        torch.testing.assert_close(results[0][0][name], results[1][0][name], rtol=1e-4, atol=1e-6)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
