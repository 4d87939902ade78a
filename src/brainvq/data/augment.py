"""Batch augmentation in torch: small random affine, left-right flip, intensity gamma.

Applied to whole training batches on their device; never to validation or test batches.
A batch of volumes (B, 1, D, H, W) gets one draw per volume, applied identically to all its
slices (an in-plane affine of the whole volume), so the volume stays a volume.
In the OASIS orientation (anterior on the right) the left-right axis is vertical, so the
left-right flip reverses rows (H), not columns: flipping columns would swap front and back
of the brain, which no real scan shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from brainvq.config import require


@dataclass
class AugmentConfig:
    """Training augmentation (off by default).

    Attributes:
        enabled: apply augmentation to training batches.
        max_rotate_deg: rotation drawn uniformly in [-max, max] degrees.
        max_translate: shift drawn uniformly in [-max, max], as a fraction of the image size.
        max_scale: zoom factor drawn uniformly in [1 - max, 1 + max].
        flip_prob: probability of a left-right flip (rows reversed).
        gamma_range: intensity gamma drawn uniformly in [low, high]; x -> x ** gamma.
    """

    enabled: bool = False
    max_rotate_deg: float = 5.0
    max_translate: float = 0.03
    max_scale: float = 0.05
    flip_prob: float = 0.5
    gamma_range: tuple[float, float] = (0.9, 1.1)

    def validate(self) -> None:
        require(
            0 <= self.max_rotate_deg <= 45,
            "max_rotate_deg",
            f"must be in [0, 45], got {self.max_rotate_deg}",
        )
        require(
            0 <= self.max_translate <= 0.25,
            "max_translate",
            f"must be in [0, 0.25], got {self.max_translate}",
        )
        require(
            0 <= self.max_scale < 0.5, "max_scale", f"must be in [0, 0.5), got {self.max_scale}"
        )
        require(0 <= self.flip_prob <= 1, "flip_prob", f"must be in [0, 1], got {self.flip_prob}")
        require(
            len(self.gamma_range) == 2 and 0 < self.gamma_range[0] <= self.gamma_range[1],
            "gamma_range",
            f"expected [low, high] with 0 < low <= high, got {list(self.gamma_range)}",
        )


def _uniform(
    n: int, low: float, high: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=device)
    return low + (high - low) * u


def augment_batch(
    x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Augment a batch; each image gets its own random affine, flip and gamma.

    Args:
        x: (B, 1, H, W) float in [0, 1], or volumes (B, 1, D, H, W).
        cfg: the augmentation ranges (returns `x` unchanged when cfg.enabled is False).
        generator: a torch.Generator on x's device for reproducible draws (None: global RNG).
    Returns:
        x's shape, float in [0, 1], same dtype and device as `x`.
    """
    if x.ndim not in (4, 5) or x.shape[1] != 1:
        raise ValueError(
            f"augment_batch expects (B, 1, H, W) or (B, 1, D, H, W), got {tuple(x.shape)}"
        )
    if not cfg.enabled:
        return x
    cfg.validate()
    if x.ndim == 5:
        # the levels as channels: grid_sample moves every channel of an image alike
        return _augment(x[:, 0], cfg, generator).unsqueeze(1)  # (B, 1, D, H, W)
    return _augment(x, cfg, generator)


def _augment(
    x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """augment_batch on (B, C, H, W): one draw per item, the same for all its C channels."""
    b, device = x.shape[0], x.device
    angle = _uniform(b, -cfg.max_rotate_deg, cfg.max_rotate_deg, generator, device) * (
        math.pi / 180
    )
    scale = _uniform(b, 1 - cfg.max_scale, 1 + cfg.max_scale, generator, device)
    shift = _uniform(2 * b, -cfg.max_translate, cfg.max_translate, generator, device).view(b, 2) * 2
    flip = torch.rand(b, generator=generator, device=device) < cfg.flip_prob
    gamma = _uniform(b, *cfg.gamma_range, generator, device)
    # affine_grid maps output to input coordinates in [-1, 1] (x: columns, y: rows).
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    row_sign = torch.where(flip, -1.0, 1.0).to(x.dtype)
    theta = torch.zeros(b, 2, 3, device=device, dtype=x.dtype)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * row_sign
    theta[:, 1, 0] = sin
    theta[:, 1, 1] = cos * row_sign
    theta[:, :, 2] = shift.to(x.dtype)
    grid = F.affine_grid(theta, [b, 1, *x.shape[2:]], align_corners=False)  # (B, H, W, 2)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped.clamp(0, 1).pow(gamma.to(x.dtype).view(b, 1, 1, 1))
