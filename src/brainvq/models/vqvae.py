"""The VQ-VAE: a convolutional encoder, the vector quantizer and a decoder mirroring the encoder.

A model is 2D or 3D (`dims`). A 2D model codes slices: images (B, C, H, W) float in [0, 1];
the encoder downsamples by 4 (default: 128x128 -> 32x32 code maps) or 8 with stride-2
convolutions, the decoder upsamples with stride-2 transposed convolutions. A 3D model codes
volumes, a subject's slices on the frame stacked in level order: (B, C, D, H, W), with the
same in-plane strides and `level_downsample` through the levels (the first stages stride 2
through the levels too, the rest 1), so 32 x 128 x 128 -> 16 x 32 x 32 codes by default. Both
use the same quantizer: a 3D latent (B, code_dim, d, h, w) is quantized as the map
(B, code_dim, d*h, w), the same vectors in the same order. Only plain modules live here:
losses are combined and optimised by the trainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from brainvq.config import require
from brainvq.models.eval_mode import eval_mode
from brainvq.models.quantizer import UPDATE_MODES, VectorQuantizer, VQOutput

NORMS = ("none", "group", "batch")
DOWNSAMPLE_FACTORS = (4, 8)
DIMS = (2, 3)
LEVEL_DOWNSAMPLE_FACTORS = (1, 2, 4, 8)
# GroupNorm uses this many groups, or the largest divisor of the width below it.
MAX_NORM_GROUPS = 32


@dataclass
class VQVAEConfig:
    """Architecture and codebook of a VQ-VAE; saved with every model so it can be rebuilt.

    channels holds one width per downsampling stage (log2(downsample) of them, finest first);
    the residual blocks run at the last width with res_channels hidden channels. The default
    widths are small on purpose: (16, 32) trains the most images per CPU second. Given minutes
    in bf16 with the SSIM loss, wider wins: 7 single-thread minutes on the demo reached SSIM
    0.943 with (16, 32) and 0.957 with (32, 64) (docs/results.md, "What moved the numbers"),
    which the demo and oasis_cpu configs therefore use. Wider models (e.g. (64, 128)) are for GPUs.

    The trainer's reconstruction loss is MSE + ssim_weight x (1 - SSIM) (the SSIM of
    `brainvq.metrics`, of every axial slice for a 3D model); beta weighs the commitment loss.
    Both are kept here, with the architecture, so a bundle says how its model was trained.

    dims 3 makes a volumetric model: the same widths, with Conv3d layers; `level_downsample`
    (1, 2, 4 or 8, at most `downsample`) is its stride through the levels, and a volume's
    number of levels must be a multiple of it. A 2D model ignores it.
    """

    image_size: int = 128
    in_channels: int = 1
    dims: int = 2
    downsample: int = 4
    level_downsample: int = 2
    channels: tuple[int, ...] = (16, 32)
    res_blocks: int = 2
    res_channels: int = 16
    code_dim: int = 64
    codebook_size: int = 512
    beta: float = 0.25
    ssim_weight: float = 0.1
    update: str = "ema"
    decay: float = 0.99
    eps: float = 1e-5
    kmeans_init: bool = True
    kmeans_iters: int = 10
    dead_code_steps: int = 10
    restart_buffer: int = 4096
    restart_noise: float = 0.01
    norm: str = "none"
    dropout: float = 0.0

    def validate(self) -> None:
        require(self.in_channels >= 1, "in_channels", f"must be >= 1, got {self.in_channels}")
        require(self.dims in DIMS, "dims", f"must be one of {list(DIMS)}, got {self.dims}")
        require(
            self.level_downsample in LEVEL_DOWNSAMPLE_FACTORS
            and self.level_downsample <= self.downsample,
            "level_downsample",
            f"must be one of {list(LEVEL_DOWNSAMPLE_FACTORS)} and at most "
            f"downsample={self.downsample}, got {self.level_downsample}",
        )
        require(
            self.downsample in DOWNSAMPLE_FACTORS,
            "downsample",
            f"must be one of {list(DOWNSAMPLE_FACTORS)}, got {self.downsample}",
        )
        require(
            self.image_size >= self.downsample and self.image_size % self.downsample == 0,
            "image_size",
            f"must be a positive multiple of downsample={self.downsample}, got {self.image_size}",
        )
        stages = int(math.log2(self.downsample))
        require(
            len(self.channels) == stages,
            "channels",
            f"needs {stages} widths for downsample={self.downsample}, got {list(self.channels)}",
        )
        require(
            all(c >= 1 for c in self.channels),
            "channels",
            f"widths must be >= 1, got {list(self.channels)}",
        )
        require(self.res_blocks >= 0, "res_blocks", f"must be >= 0, got {self.res_blocks}")
        require(self.res_channels >= 1, "res_channels", f"must be >= 1, got {self.res_channels}")
        require(self.code_dim >= 1, "code_dim", f"must be >= 1, got {self.code_dim}")
        require(self.codebook_size >= 2, "codebook_size", f"must be >= 2, got {self.codebook_size}")
        require(self.beta >= 0, "beta", f"must be >= 0, got {self.beta}")
        require(self.ssim_weight >= 0, "ssim_weight", f"must be >= 0, got {self.ssim_weight}")
        require(
            self.update in UPDATE_MODES,
            "update",
            f"must be one of {list(UPDATE_MODES)}, got {self.update!r}",
        )
        require(0 < self.decay < 1, "decay", f"must be in (0, 1), got {self.decay}")
        require(self.eps > 0, "eps", f"must be > 0, got {self.eps}")
        require(self.kmeans_iters >= 1, "kmeans_iters", f"must be >= 1, got {self.kmeans_iters}")
        require(
            self.dead_code_steps >= 0,
            "dead_code_steps",
            f"must be >= 0 (0 turns restarts off), got {self.dead_code_steps}",
        )
        require(
            self.restart_buffer >= 1, "restart_buffer", f"must be >= 1, got {self.restart_buffer}"
        )
        require(self.restart_noise >= 0, "restart_noise", f"must be >= 0, got {self.restart_noise}")
        require(self.norm in NORMS, "norm", f"must be one of {list(NORMS)}, got {self.norm!r}")
        require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")

    @property
    def latent_size(self) -> int:
        """Side of the square code map: image_size // downsample."""
        return self.image_size // self.downsample

    @property
    def level_stride(self) -> int:
        """Slice levels a latent level: level_downsample for a 3D model, 1 for a 2D one."""
        return self.level_downsample if self.dims == 3 else 1

    def latent_depth(self, levels: int) -> int:
        """Latent levels of a volume of `levels` levels (a 3D model): levels // level_downsample.
        ValueError when `levels` is not a positive multiple of level_downsample."""
        if levels < 1 or levels % self.level_downsample:
            raise ValueError(
                f"a volume of {levels} levels does not fit this 3D VQ-VAE's level stride "
                f"{self.level_downsample}: the number of levels must be a positive multiple of it"
            )
        return levels // self.level_downsample

    def stages(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """(kernel, stride) of each downsampling stage, finest first: 4x4 stride 2 in-plane;
        through the levels (3D) 4 stride 2 for the first log2(level_downsample) stages, then
        3 stride 1. The transposed convolutions of the decoder mirror them (padding 1 both)."""
        n = int(math.log2(self.downsample))
        if self.dims == 2:
            return [((4, 4), (2, 2))] * n
        through = int(math.log2(self.level_downsample))
        return [((4, 4, 4), (2, 2, 2)) if i < through else ((3, 4, 4), (1, 2, 2)) for i in range(n)]


@dataclass(frozen=True)
class ConvKinds:
    """The layer classes of a model of `dims` dimensions."""

    conv: type[nn.Module]
    transposed: type[nn.Module]
    dropout: type[nn.Module]
    batch_norm: type[nn.Module]


def conv_kinds(dims: int) -> ConvKinds:
    """Conv2d and friends for dims 2, Conv3d and friends for dims 3."""
    if dims == 2:
        return ConvKinds(nn.Conv2d, nn.ConvTranspose2d, nn.Dropout2d, nn.BatchNorm2d)
    if dims == 3:
        return ConvKinds(nn.Conv3d, nn.ConvTranspose3d, nn.Dropout3d, nn.BatchNorm3d)
    raise ValueError(f"dims must be one of {list(DIMS)}, got {dims}")


def make_norm(kind: str, channels: int, dims: int = 2) -> nn.Module:
    """The normalisation layer named by VQVAEConfig.norm for a feature map of this width."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(MAX_NORM_GROUPS, channels), channels)
    if kind == "batch":
        return conv_kinds(dims).batch_norm(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {list(NORMS)}, got {kind!r}")


class ResidualBlock(nn.Module):
    """x + conv1x1(dropout(relu(norm(conv3x3(relu(norm(x))))))): (B, C, h, w) -> (B, C, h, w),
    or with dims 3 the same in 3D: (B, C, d, h, w) -> (B, C, d, h, w)."""

    def __init__(
        self, channels: int, hidden: int, norm: str = "none", dropout: float = 0.0, dims: int = 2
    ):
        super().__init__()
        kinds = conv_kinds(dims)
        self.body = nn.Sequential(
            make_norm(norm, channels, dims),
            nn.ReLU(),
            kinds.conv(channels, hidden, 3, padding=1),
            make_norm(norm, hidden, dims),
            nn.ReLU(),
            kinds.dropout(dropout) if dropout > 0 else nn.Identity(),
            kinds.conv(hidden, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _residual_stack(config: VQVAEConfig, width: int) -> list[nn.Module]:
    return [
        ResidualBlock(width, config.res_channels, config.norm, config.dropout, config.dims)
        for _ in range(config.res_blocks)
    ]


class Encoder(nn.Module):
    """Strided convolutions (one per width, VQVAEConfig.stages), a 3x3 convolution, residual
    blocks and a 1x1 projection to code_dim.

    x: (B, C, H, W) -> z: (B, code_dim, H / downsample, W / downsample), unbounded floats; with
    dims 3 x: (B, C, D, H, W) -> z: (B, code_dim, D / level_downsample, H / f, W / f).
    """

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        kinds, dims = conv_kinds(config.dims), config.dims
        layers: list[nn.Module] = []
        previous = config.in_channels
        for width, (kernel, stride) in zip(config.channels, config.stages(), strict=True):
            layers += [
                kinds.conv(previous, width, kernel, stride=stride, padding=1),
                make_norm(config.norm, width, dims),
                nn.ReLU(),
            ]
            previous = width
        layers.append(kinds.conv(previous, previous, 3, padding=1))
        layers += _residual_stack(config, previous)
        layers += [
            make_norm(config.norm, previous, dims),
            nn.ReLU(),
            kinds.conv(previous, config.code_dim, 1),
        ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """The encoder in reverse: a 3x3 convolution from code_dim, residual blocks, then strided
    transposed convolutions (the encoder's stages, coarsest first) back to the image, with a
    linear output.

    z: (B, code_dim, h, w) -> x_hat: (B, C, h * downsample, w * downsample) float, close to
    [0, 1] but not clamped (see VQVAE); with dims 3 z: (B, code_dim, d, h, w) -> x_hat:
    (B, C, d * level_downsample, h * f, w * f).
    """

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        kinds, dims = conv_kinds(config.dims), config.dims
        widths = list(reversed(config.channels))
        stages = list(reversed(config.stages()))
        layers: list[nn.Module] = [kinds.conv(config.code_dim, widths[0], 3, padding=1)]
        layers += _residual_stack(config, widths[0])
        layers += [make_norm(config.norm, widths[0], dims), nn.ReLU()]
        outputs = [*widths[1:], config.in_channels]
        for i, (width, out, (kernel, stride)) in enumerate(
            zip(widths, outputs, stages, strict=True)
        ):
            layers.append(kinds.transposed(width, out, kernel, stride=stride, padding=1))
            if i < len(widths) - 1:
                layers += [make_norm(config.norm, out, dims), nn.ReLU()]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.layers(z)


class VQVAE(nn.Module):
    """Encoder -> VectorQuantizer -> Decoder.

    The decoder's output is linear, not a sigmoid: x_hat is trained by MSE against x in [0, 1]
    and may stray slightly outside [0, 1], so clamp it before showing or scoring it. On
    skull-stripped slices, whose background is exactly 0, a linear output reaches 0 (after the
    clamp) where a sigmoid needs very negative logits; in equal-time OASIS runs it gave the
    higher validation SSIM.
    """

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = VectorQuantizer(
            codebook_size=config.codebook_size,
            code_dim=config.code_dim,
            beta=config.beta,
            update=config.update,
            decay=config.decay,
            eps=config.eps,
            kmeans_init=config.kmeans_init,
            kmeans_iters=config.kmeans_iters,
            dead_code_steps=config.dead_code_steps,
            restart_buffer=config.restart_buffer,
            restart_noise=config.restart_noise,
        )
        self.decoder = Decoder(config)

    def _check_images(self, x: Tensor) -> None:
        c, f, ld = self.config.in_channels, self.config.downsample, self.config.level_downsample
        if self.config.dims == 2:
            if x.ndim != 4 or x.shape[1] != c or x.shape[2] % f or x.shape[3] % f:
                raise ValueError(
                    f"expected images of shape (B, {c}, H, W) with H and W multiples of {f}, "
                    f"got {tuple(x.shape)}"
                )
        elif x.ndim != 5 or x.shape[1] != c or x.shape[2] % ld or x.shape[3] % f or x.shape[4] % f:
            raise ValueError(
                f"expected volumes of shape (B, {c}, D, H, W) with D a multiple of the level "
                f"stride {ld} and H and W multiples of {f}, got {tuple(x.shape)}"
            )

    def _quantizer_map(self, z: Tensor) -> Tensor:
        """The quantizer's (B, code_dim, h', w) view of a latent: itself in 2D, the levels
        stacked along the rows in 3D ((B, code_dim, d, h, w) -> (B, code_dim, d*h, w))."""
        return z if self.config.dims == 2 else z.flatten(2, 3)

    def forward(self, x: Tensor) -> tuple[Tensor, VQOutput]:
        """Reconstruct x; in training mode the quantizer also updates its codebook.

        x: (B, C, H, W) float in [0, 1] (3D: (B, C, D, H, W)). Returns x_hat of x's shape,
        float, about [0, 1] (not clamped), and the quantizer's VQOutput (indices (B, H/f, W/f),
        3D (B, D/level_downsample, H/f, W/f); quantized of the latent's shape; losses, usage).
        """
        self._check_images(x)
        z = self.encoder(x)  # (B, code_dim, h, w) or (B, code_dim, d, h, w)
        vq = self.quantizer(self._quantizer_map(z))
        if self.config.dims == 3:
            vq = vq._replace(
                quantized=vq.quantized.view(z.shape),  # (B, code_dim, d, h, w)
                indices=vq.indices.view(z.shape[0], *z.shape[2:]),  # (B, d, h, w)
            )
        return self.decoder(vq.quantized), vq

    def encode(self, x: Tensor) -> Tensor:
        """Code maps of x; never changes the model (eval-mode layers, no codebook update).

        x: (B, C, H, W) float in [0, 1]. Returns (B, H/f, W/f) int64 in [0, codebook_size).
        3D: x (B, C, D, H, W) -> (B, D/level_downsample, H/f, W/f).
        """
        self._check_images(x)
        with eval_mode(self), torch.no_grad():
            z = self.encoder(x)
            codes = self.quantizer.lookup(self._quantizer_map(z))  # (B, h', w)
            return codes.view(z.shape[0], *z.shape[2:])  # (B, h, w) or (B, d, h, w)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Images of code maps, with eval-mode layers and no gradients.

        indices: (B, h, w) integer in [0, codebook_size) (3D: (B, d, h, w)). Returns
        (B, C, h*f, w*f) float (3D: (B, C, d*level_downsample, h*f, w*f)), about [0, 1] (not
        clamped), equal to the eval-mode forward's x_hat for indices = encode(x).
        """
        dims = self.config.dims
        if indices.ndim != dims + 1:
            shape = "(B, h, w)" if dims == 2 else "(B, d, h, w)"
            raise ValueError(
                f"a {dims}D VQ-VAE decodes indices of shape {shape}, got {tuple(indices.shape)}"
            )
        with eval_mode(self), torch.no_grad():
            if dims == 2:
                return self.decoder(self.quantizer.embed(indices))
            b, d, h, w = indices.shape
            z = self.quantizer.embed(indices.reshape(b, d * h, w))  # (B, code_dim, d*h, w)
            return self.decoder(z.view(b, -1, d, h, w))  # (B, C, D, H, W)
