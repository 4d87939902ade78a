"""The patch discriminator of adversarial (VQGAN-style) VQ-VAE training, and its config section.

A PatchGAN (Isola et al. 2017, as used by VQGAN, Esser et al. 2021): stride-2 4x4 convolutions
with LeakyReLU, then two stride-1 4x4 convolutions, the last to one channel. Each output logit
judges one overlapping patch of the input (70x70 pixels for 3 layers), so the loss rewards
realistic local texture (the fine gyri an MSE-trained decoder smooths away) rather than global
layout, which the reconstruction loss already gets right.

Only the module and its config live here; the losses, the adaptive weight and the two
optimisers are the trainer's (brainvq.training.adversarial, brainvq.training.vqvae_module).
The discriminator is never part of a model bundle: only training needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from brainvq.config import require

LOSSES = ("hinge", "non_saturating")
# Widths double per stride-2 layer up to this multiple of `channels` (pix2pix's cap).
MAX_WIDTH_MULTIPLIER = 8
LEAKY_SLOPE = 0.2
# pix2pix / VQGAN initialise the discriminator's convolutions from N(0, 0.02).
INIT_STD = 0.02


@dataclass
class AdversarialConfig:
    """The `adversarial` section of a run: an optional patch discriminator on the VQ-VAE's
    reconstructions, and an optional frequency loss.

    enabled: train the discriminator (and add its loss to the VQ-VAE's) from `start_step` on.
    start_step: VQ-VAE training steps with the reconstruction loss only; the discriminator
        neither trains nor feeds the decoder before it (VQGAN's `disc_start`).
    loss: "hinge" (VQGAN's default) or "non_saturating" (softplus, Goodfellow et al. 2014).
    weight: multiplies the adaptive weight, VQGAN's `disc_weight`. 0.1 (VQGAN: 0.8) because
        fidelity to the scan matters more here than photographic realism.
    max_adaptive_weight: clamp of the adaptive weight ||grad rec|| / ||grad adv|| at the
        decoder's last layer (VQGAN: 1e4).
    lr, betas: the discriminator's AdamW; it follows the VQ-VAE's warm-up + cosine schedule.
    layers, channels: stride-2 layers (the patch grows with them: 3 layers see 70x70 px) and
        the first layer's width (doubling per layer, at most 8x). 16 keeps a step on a CPU
        within about twice a plain one; GPUs can afford VQGAN's 64.
    spectral_norm: spectral normalisation of every convolution (Miyato et al. 2018), which
        keeps the discriminator's gradients bounded without batch statistics.
    frequency_weight: weight of the log-amplitude spectrum loss
        (brainvq.training.adversarial.log_spectrum_distance); 0 turns it off. It applies
        whether or not the discriminator is enabled.
    """

    enabled: bool = False
    start_step: int = 2000
    loss: str = "hinge"
    weight: float = 0.1
    max_adaptive_weight: float = 1e4
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.9)
    layers: int = 3
    channels: int = 16
    spectral_norm: bool = True
    frequency_weight: float = 0.0

    def validate(self) -> None:
        require(self.start_step >= 0, "start_step", f"must be >= 0, got {self.start_step}")
        require(self.loss in LOSSES, "loss", f"must be one of {list(LOSSES)}, got {self.loss!r}")
        require(self.weight > 0, "weight", f"must be > 0, got {self.weight}")
        require(
            self.max_adaptive_weight > 0,
            "max_adaptive_weight",
            f"must be > 0, got {self.max_adaptive_weight}",
        )
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "betas",
            f"expected two numbers in [0, 1), got {list(self.betas)}",
        )
        require(self.layers >= 1, "layers", f"must be >= 1, got {self.layers}")
        require(self.channels >= 1, "channels", f"must be >= 1, got {self.channels}")
        require(
            self.frequency_weight >= 0,
            "frequency_weight",
            f"must be >= 0 (0 turns it off), got {self.frequency_weight}",
        )

    def output_size(self, image_size: int) -> int:
        """Side of the logit map for image_size x image_size inputs (< 1: too many layers)."""
        return (image_size >> self.layers) - 2

    @property
    def changes_training(self) -> bool:
        """True when this section changes how the VQ-VAE trains (a bundle records it then)."""
        return self.enabled or self.frequency_weight > 0


def _conv(c_in: int, c_out: int, stride: int, spectral_norm: bool) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1)
    nn.init.normal_(conv.weight, 0.0, INIT_STD)
    nn.init.zeros_(conv.bias)
    if spectral_norm:
        conv = nn.utils.parametrizations.spectral_norm(conv)
    return conv


class PatchDiscriminator(nn.Module):
    """x: (B, C, H, W) float, about [0, 1] -> logits (B, 1, H/2^L - 2, W/2^L - 2) fp32.

    The body runs in whatever autocast region it is called from (bf16 on fast CPUs and GPUs);
    the last convolution runs in fp32 with autocast off, so the logits, and the losses made
    from them, never lose digits to bf16 or overflow in fp16.
    """

    def __init__(self, config: AdversarialConfig, in_channels: int = 1):
        super().__init__()
        config.validate()
        self.config = config
        sn = config.spectral_norm
        widths = [config.channels * min(2**i, MAX_WIDTH_MULTIPLIER) for i in range(config.layers)]
        layers: list[nn.Module] = []
        previous = in_channels
        for width in widths:
            layers += [_conv(previous, width, 2, sn), nn.LeakyReLU(LEAKY_SLOPE)]
            previous = width
        width = config.channels * min(2**config.layers, MAX_WIDTH_MULTIPLIER)
        layers += [_conv(previous, width, 1, sn), nn.LeakyReLU(LEAKY_SLOPE)]
        self.body = nn.Sequential(*layers)
        self.head = _conv(width, 1, 1, sn)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or min(x.shape[-2:]) >> self.config.layers < 3:
            raise ValueError(
                f"expected images (B, C, H, W) with H, W >= {3 << self.config.layers} for "
                f"{self.config.layers} discriminator layers, got {tuple(x.shape)}"
            )
        h = self.body(x)  # (B, W, H/2^L - 1, W/2^L - 1)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.head(h.float())  # (B, 1, H/2^L - 2, W/2^L - 2)
