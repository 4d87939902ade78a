"""The losses of adversarial VQ-VAE training (VQGAN, Esser et al. 2021) and the frequency loss.

- discriminator_loss / generator_loss: hinge or non-saturating GAN losses on patch logits.
- adaptive_weight: VQGAN's balance between the adversarial and the reconstruction gradient,
  ||d rec / d W|| / (||d adv / d W|| + 1e-4) at the decoder's last layer W, clamped. The
  adversarial term then pushes the decoder's output about as hard as the reconstruction term
  does (times AdversarialConfig.weight) whatever the two losses' scales, which drift apart as
  the discriminator learns.
- log_spectrum_distance: the frequency loss, an L1 distance between log-amplitude spectra.

Why a log-amplitude distance rather than the focal frequency loss (Jiang et al. 2021): by
Parseval, MSE already is a squared distance between the complex spectra, and on brain slices
nearly all of that distance sits in the few low-frequency bins that hold most of the power;
a decoder that gets those right scores well while the high frequencies, where the gyri and
sulci live, come out too weak. The focal loss reweights that same complex distance by each
bin's share of the batch's largest error, which again favours the high-power bins. Comparing
log amplitudes counts each frequency by its relative error instead, so missing high-frequency
power (the blur that the sharpness ratio measures) costs as much as a wrong intensity. It
ignores phase, so it cannot move edges; MSE and SSIM keep them where they belong. And it has
no weights normalised by the batch, so its scale does not change as training goes.

Every loss here is computed in fp32 with autocast off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# The log amplitude's floor, in the units of torch.fft.rfft2(norm="ortho") on images in [0, 1],
# where white noise of per-pixel std s gives bins of rms amplitude s: 1e-3 is about the
# rounding noise of 8-bit slices (1/255/sqrt(12)), so bins below the data's own noise do not
# count.
FREQUENCY_EPS = 1e-3
# VQGAN's guard against a vanishing adversarial gradient in the adaptive weight.
ADAPTIVE_EPS = 1e-4


def discriminator_loss(kind: str, logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """The discriminator's loss (scalar, fp32), halved as in VQGAN.

    hinge: (mean relu(1 - real) + mean relu(1 + fake)) / 2;
    non_saturating: (mean softplus(-real) + mean softplus(fake)) / 2, i.e. the binary
    cross-entropy of real = 1, fake = 0. logits_*: (B, 1, h, w) any float dtype.
    """
    with torch.autocast(device_type=logits_real.device.type, enabled=False):
        real, fake = logits_real.float(), logits_fake.float()
        if kind == "hinge":
            return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
        if kind == "non_saturating":
            return 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())
    raise ValueError(f"loss: expected 'hinge' or 'non_saturating', got {kind!r}")


def generator_loss(kind: str, logits_fake: Tensor) -> Tensor:
    """The decoder's adversarial loss (scalar, fp32) on the logits of its reconstructions.

    hinge: -mean(fake) (Lim & Ye 2017, VQGAN); non_saturating: mean softplus(-fake), i.e.
    -log sigmoid(fake). logits_fake: (B, 1, h, w) any float dtype.
    """
    with torch.autocast(device_type=logits_fake.device.type, enabled=False):
        fake = logits_fake.float()
        if kind == "hinge":
            return -fake.mean()
        if kind == "non_saturating":
            return F.softplus(-fake).mean()
    raise ValueError(f"loss: expected 'hinge' or 'non_saturating', got {kind!r}")


def adaptive_weight(
    reconstruction: Tensor,
    adversarial: Tensor,
    last_layer: Tensor,
    max_weight: float,
    loss_scale: float = 1.0,
) -> Tensor:
    """VQGAN's adaptive weight: ||d reconstruction / d W|| / (||d adversarial / d W|| + 1e-4),
    clamped to [0, max_weight] and detached, for W = `last_layer` (the decoder's last weight).

    Both losses are scalars whose graphs reach `last_layer`; the graphs are kept for the
    backward pass that follows. loss_scale: 16-mixed's gradient-scaler scale. Both gradients
    are taken of the scaled losses (and the 1e-4 scaled too, so the value does not change),
    for the same reason the scaler exists: through fp16 activations, the gradient of a mean
    over every pixel underflows to 0. Under DDP each process computes the weight from its own
    batch (the gradients that DDP then averages already include it).
    """
    if not torch.is_grad_enabled():
        raise ValueError("adaptive_weight needs gradients: call it outside torch.no_grad()")
    g_rec = torch.autograd.grad(reconstruction * loss_scale, last_layer, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adversarial * loss_scale, last_layer, retain_graph=True)[0]
    weight = g_rec.float().norm() / (g_adv.float().norm() + ADAPTIVE_EPS * loss_scale)
    return weight.clamp(0.0, max_weight).detach()


def log_spectrum_distance(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean |log(|F x_hat| + eps) - log(|F x| + eps)| over images, channels and frequencies.

    x_hat, x: (B, C, H, W) float, images about [0, 1]; F is the 2D real FFT with orthonormal
    scaling (torch.fft.rfft2(norm="ortho")), eps = FREQUENCY_EPS. Returns a scalar, fp32.
    """
    if x_hat.shape != x.shape or x.ndim != 4:
        raise ValueError(
            f"expected two (B, C, H, W) batches of one shape, got {tuple(x_hat.shape)} and "
            f"{tuple(x.shape)}"
        )
    with torch.autocast(device_type=x.device.type, enabled=False):
        amp_hat = torch.fft.rfft2(x_hat.float(), norm="ortho").abs()  # (B, C, H, W/2 + 1)
        amp = torch.fft.rfft2(x.float(), norm="ortho").abs()  # (B, C, H, W/2 + 1)
        return (torch.log(amp_hat + FREQUENCY_EPS) - torch.log(amp + FREQUENCY_EPS)).abs().mean()
