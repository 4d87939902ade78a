"""Gated PixelCNN prior over VQ-VAE code maps (van den Oord et al., 2016).

The network reads a code map `codes: (B, h, w) int64 in [0, K)` and returns logits `(B, K, h, w)`
whose value at position p depends only on the codes before p in raster order (and on the slice
level when the model is conditional):

    embedding -> MaskedConv2d type A (horizontal stack input, current position hidden)
              + a projection of the ConditionMap (slice level x position)
              -> n_layers x GatedLayer (vertical + horizontal stacks, type-B horizontal mask,
                 each adding its own projection of the ConditionMap)
              -> head: ReLU, 1x1, ReLU, 1x1 -> K logits

The vertical stack starts from the embedding and sees, at row r, the rows r - k//2 .. r over the
full kernel width, so its receptive field grows to the right as well as to the left; feeding it
to the horizontal stack shifted down by one row keeps the current row hidden. That removes the
blind spot of a plain stack of masked convolutions.

The slices are atlas-registered, so where a code sits, and at which axial level, says much about
what it can be (background outside the head, ventricles near the centre at the upper levels).
The ConditionMap holds that knowledge as a map of features: a learned feature map per level,
plus a small MLP of sin/cos features of each position's normalised coordinates and of the
level's embedding. Every gated layer adds its own 1x1 projection of the map to its
pre-activations (a learned per-layer bias that varies with level and position), and the
horizontal stack starts with one. The map depends on no code, so it keeps the model causal,
and it works for any map size (the level maps are resized). With level_maps off and
position_frequencies=0 it reduces to a per-layer level bias that is the same everywhere; an
unconditional model without position features or level maps has no map.

A plain stack of 3x3 layers lets a position see only n_layers rows up, a third of a 32x32 map;
the anatomy it draws then loses its global shape. The map carries that shape, and the vertical
stack's kernel (kernel_size) sets how far up the local context reaches.

With `neighbour: previous` the prior models whole subjects slice by slice: the NeighbourMap of
the slice below's code map (brainvq.models.neighbour_map) is added to the ConditionMap. The
slice below is known in full before this slice is drawn, so the map may read all of it and the
model stays causal within the slice; the cached samplers stay exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainvq.config import require
from brainvq.models.condition_map import ConditionMap
from brainvq.models.neighbour_map import NO_SLICE, NeighbourMap, no_slice_below

NEIGHBOURS = ("none", "previous")


@dataclass
class PixelCNNConfig:
    """Size of a GatedPixelCNN.

    The default is sized for CPUs (docs/results.md, "What moved the numbers", has the
    measurements behind the width and the level-map rank). A GPU-sized prior:
    embed_dim=64, channels=128, n_layers=15, kernel_size=5, first_kernel=7, head_channels=512,
    cond_channels=64, dropout=0.1.
    """

    codebook_size: int = 512
    n_levels: int = 0  # 0: unconditional; else conditioned on a slice level in [0, n_levels)
    embed_dim: int = 32
    channels: int = 32
    n_layers: int = 8
    kernel_size: int = 3  # gated layers (type B), odd
    first_kernel: int = 5  # first masked convolution (type A), odd
    head_channels: int = 128
    dropout: float = 0.0
    position_frequencies: int = 8  # sin/cos frequencies per axis; 0: translation invariant
    cond_channels: int = 32  # width of the ConditionMap (level x position features)
    level_maps: bool = True  # learn a feature map per level (one map without levels)
    # 0: an independent map per level; R > 0: each level's map is a learned mixture of R basis
    # maps, starting as linear interpolation between R evenly spaced anchor levels
    level_map_rank: int = 8
    map_size: int = 32  # side of those maps: the code maps' side (a run sets it)
    # "previous": also condition on the code map of the slice below (whole subjects, slice by
    # slice; brainvq.models.neighbour_map); "none": each slice on its own
    neighbour: str = "none"
    neighbour_channels: int = 32  # width of the NeighbourMap's convolutions
    neighbour_layers: int = 2  # its 3x3 convolutions over the slice below's codes
    # training: the share of maps shown without their slice below, so the prior also draws a
    # first slice at any level and judges a slice on its own (anomaly maps, `sample --n`): at
    # 0.5 it models a slice alone about as well as a prior of single slices trained as long,
    # at 0.1 clearly worse (docs/subjects.md, "One prior for both jobs")
    neighbour_dropout: float = 0.5
    # training: the share of the slice below's codes replaced by random codes, so that the prior
    # does not copy it blindly (its own draws, not real slices, lie below when it samples)
    neighbour_noise: float = 0.0

    def validate(self) -> None:
        require(self.codebook_size >= 2, "codebook_size", f"must be >= 2, got {self.codebook_size}")
        require(self.n_levels >= 0, "n_levels", f"must be >= 0, got {self.n_levels}")
        for key in ("embed_dim", "channels", "n_layers", "head_channels", "cond_channels"):
            value = getattr(self, key)
            require(value >= 1, key, f"must be >= 1, got {value}")
        for key in ("kernel_size", "first_kernel"):
            value = getattr(self, key)
            require(value >= 3 and value % 2 == 1, key, f"must be an odd number >= 3, got {value}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(
            self.position_frequencies >= 0,
            "position_frequencies",
            f"must be >= 0, got {self.position_frequencies}",
        )
        require(self.map_size >= 1, "map_size", f"must be >= 1, got {self.map_size}")
        require(
            self.level_map_rank >= 0,
            "level_map_rank",
            f"must be >= 0 (0: one map per level), got {self.level_map_rank}",
        )
        require(
            self.neighbour in NEIGHBOURS,
            "neighbour",
            f"expected one of {list(NEIGHBOURS)}, got {self.neighbour!r}",
        )
        require(
            self.neighbour_channels >= 1,
            "neighbour_channels",
            f"must be >= 1, got {self.neighbour_channels}",
        )
        require(
            self.neighbour_layers >= 0,
            "neighbour_layers",
            f"must be >= 0, got {self.neighbour_layers}",
        )
        for key in ("neighbour_dropout", "neighbour_noise"):
            value = getattr(self, key)
            require(0.0 <= value < 1.0, key, f"must be in [0, 1), got {value}")

    @property
    def has_neighbour(self) -> bool:
        """Whether the prior conditions on the code map of the slice below."""
        return self.neighbour == "previous"


class MaskedConv2d(nn.Conv2d):
    """Convolution whose kernel sees only positions before its centre in raster order.

    Mask "A" hides the centre (first layer: the current code must stay unseen); mask "B" keeps it
    (later layers, whose input at the centre already excludes the current code). With a 1 x k
    kernel this is the causal row convolution of the horizontal stack. Padding keeps h and w.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        mask_type: str,
    ) -> None:
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type: expected 'A' or 'B', got {mask_type!r}")
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"kernel_size: expected odd sizes, got {(kh, kw)}")
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2))
        self.mask_type = mask_type
        mask = torch.zeros(kh, kw)
        mask[: kh // 2] = 1.0
        mask[kh // 2, : kw // 2 + (mask_type == "B")] = 1.0
        self.register_buffer("mask", mask[None, None], persistent=False)  # (1, 1, kh, kw)

    def masked_weight(self) -> Tensor:
        """(out, in, kh, kw): the weight with the hidden positions zeroed."""
        return self.weight * self.mask

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.masked_weight(), self.bias, padding=self.padding)


def gate(x: Tensor) -> Tensor:
    """(B, 2C, ...) -> (B, C, ...): tanh(first half) * sigmoid(second half)."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer: vertical and horizontal stacks, residual on the horizontal one.

    v_conv sees rows r - k//2 .. r (all k columns) through top padding, so the vertical stack at
    row r never sees rows below r; its pre-activation reaches the horizontal stack through a 1x1
    convolution, shifted down one row. The horizontal stack is a 1 x k type-B masked
    convolution. The layer's projection of the ConditionMap (when the model has one) is added to
    both pre-activations before the gate.
    """

    def __init__(
        self, v_in: int, channels: int, kernel_size: int, cond_channels: int, dropout: float
    ) -> None:
        super().__init__()
        self.half = kernel_size // 2
        self.v_conv = nn.Conv2d(v_in, 2 * channels, (self.half + 1, kernel_size))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_conv = MaskedConv2d(channels, 2 * channels, (1, kernel_size), "B")
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.dropout = nn.Dropout(dropout)
        self.cond = nn.Conv2d(cond_channels, 2 * channels, 1, bias=False) if cond_channels else None

    def forward(self, v: Tensor, h: Tensor, cond_map: Tensor | None) -> tuple[Tensor, Tensor]:
        """v: (B, Cv, H, W), h: (B, C, H, W), cond_map: (B or 1, Cc, H, W) or None -> (v', h'),
        both with C channels."""
        half = self.half
        v_pre = self.v_conv(F.pad(v, (half, half, half, 0)))  # (B, 2C, H, W)
        v_down = F.pad(self.v_to_h(v_pre), (0, 0, 1, -1))  # row r holds row r - 1; row 0 zeros
        h_pre = self.h_conv(h) + v_down  # (B, 2C, H, W)
        if self.cond is not None and cond_map is not None:
            bias = self.cond(cond_map)  # (B or 1, 2C, H, W)
            v_pre = v_pre + bias
            h_pre = h_pre + bias
        return gate(v_pre), h + self.h_out(self.dropout(gate(h_pre)))


class GatedPixelCNN(nn.Module):
    """Autoregressive prior over code maps of any size, optionally conditioned on slice level
    and on the code map of the slice below."""

    def __init__(self, config: PixelCNNConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        c = config.channels
        self.embedding = nn.Embedding(config.codebook_size, config.embed_dim)
        self.first_conv = MaskedConv2d(config.embed_dim, c, config.first_kernel, "A")
        has_own = config.n_levels > 0 or config.position_frequencies > 0 or config.level_maps
        has_map = has_own or config.has_neighbour
        cc = config.cond_channels if has_map else 0
        self.condition = (
            ConditionMap(
                config.n_levels,
                config.position_frequencies,
                cc,
                config.level_maps,
                config.map_size,
                config.level_map_rank,
            )
            if has_own
            else None
        )
        self.neighbour = (
            NeighbourMap(
                config.codebook_size,
                config.embed_dim,
                config.neighbour_channels,
                config.neighbour_layers,
                cc,
            )
            if config.has_neighbour
            else None
        )
        self.cond_in = nn.Conv2d(cc, c, 1, bias=False) if has_map else None
        self.layers = nn.ModuleList(
            GatedLayer(config.embed_dim if i == 0 else c, c, config.kernel_size, cc, config.dropout)
            for i in range(config.n_layers)
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c, config.head_channels, 1),
            nn.ReLU(),
            nn.Conv2d(config.head_channels, config.codebook_size, 1),
        )

    def check_inputs(
        self, codes: Tensor, level: Tensor | None, below: Tensor | None = None
    ) -> None:
        """Raise ValueError unless codes is (B, h, w) int64 in [0, K), level fits the model and
        below is None or, for a prior with the neighbour, codes' shape, int64 in [-1, K)."""
        k = self.config.codebook_size
        if codes.dim() != 3 or codes.dtype != torch.int64:
            raise ValueError(
                f"codes: expected a (B, h, w) int64 tensor, got {tuple(codes.shape)} {codes.dtype}"
            )
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= k):
            raise ValueError(
                f"codes: expected values in [0, {k}), got [{int(codes.min())}, {int(codes.max())}]"
            )
        self.check_below(below, tuple(codes.shape))
        n_levels = self.config.n_levels
        if n_levels == 0:
            if level is not None:
                raise ValueError("level: this model is unconditional (n_levels=0); pass level=None")
            return
        if level is None:
            raise ValueError(
                f"level: this model is conditioned on the slice level; pass levels in "
                f"[0, {n_levels})"
            )
        if level.shape != (codes.shape[0],) or level.dtype != torch.int64:
            raise ValueError(
                f"level: expected a ({codes.shape[0]},) int64 tensor, "
                f"got {tuple(level.shape)} {level.dtype}"
            )
        if int(level.min()) < 0 or int(level.max()) >= n_levels:
            raise ValueError(
                f"level: expected levels in [0, {n_levels}), "
                f"got [{int(level.min())}, {int(level.max())}]"
            )

    def check_below(self, below: Tensor | None, shape: tuple[int, ...]) -> None:
        """Raise ValueError unless below (the slice below's code maps) fits `shape` (B, h, w) and
        the model: None, or (B, h, w) int64 in [-1, K) for a prior with the neighbour."""
        if below is None:
            return
        if not self.config.has_neighbour:
            raise ValueError(
                "below: this prior does not condition on the slice below (prior.neighbour: "
                "none); pass below=None"
            )
        k = self.config.codebook_size
        if tuple(below.shape) != shape or below.dtype != torch.int64:
            raise ValueError(
                f"below: expected a {shape} int64 tensor (the code maps of the slices below), "
                f"got {tuple(below.shape)} {below.dtype}"
            )
        if below.numel() and (int(below.min()) < NO_SLICE or int(below.max()) >= k):
            raise ValueError(
                f"below: expected codes in [0, {k}) or {NO_SLICE} (no slice below), "
                f"got [{int(below.min())}, {int(below.max())}]"
            )

    @torch.no_grad()
    def init_output_bias(self, code_counts: Tensor) -> None:
        """Start the head's output at the log-frequencies of the codes, (counts + 1) / total.

        code_counts: (K,) how often each code occurs in the training maps. The first steps then
        need not learn the code histogram (6-7 bits of the 9 a uniform start costs).
        """
        k = self.config.codebook_size
        if code_counts.shape != (k,):
            raise ValueError(f"code_counts: expected shape ({k},), got {tuple(code_counts.shape)}")
        counts = code_counts.double().clamp_min(0) + 1.0
        self.head[3].bias.copy_((counts / counts.sum()).log().to(self.head[3].bias.dtype))

    def condition_map(
        self, level: Tensor | None, h: int, w: int, below: Tensor | None = None
    ) -> Tensor | None:
        """(B or 1, cond_channels, h, w): what the prior is conditioned on besides the codes
        before a position: the ConditionMap for levels level (B,) or None, plus, for a prior
        with the neighbour, the NeighbourMap of below (B, h, w) (None: no slice below). None
        for a model with neither (unconditional, no position features, no level maps)."""
        parts = [] if self.condition is None else [self.condition(level, h, w)]
        if self.neighbour is not None:
            if below is None:
                below = no_slice_below(1, h, w, self.embedding.weight.device)
            parts.append(self.neighbour(below))  # (B or 1, Cc, h, w)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]

    def forward(
        self, codes: Tensor, level: Tensor | None = None, below: Tensor | None = None
    ) -> Tensor:
        """codes: (B, h, w) int64 in [0, K); level: (B,) int64 level or None; below: (B, h, w)
        int64 in [-1, K), the code maps of the slices below (a prior with the neighbour; None
        or -1: none) -> (B, K, h, w).

        The logits at position p depend only on the codes before p in raster order, on level
        and on the whole of below.
        """
        self.check_inputs(codes, level, below)
        emb = self.embedding(codes).permute(0, 3, 1, 2)  # (B, E, h, w)
        cond_map = self.condition_map(level, codes.shape[1], codes.shape[2], below)
        h = self.first_conv(emb)  # (B, C, h, w)
        if cond_map is not None:
            h = h + self.cond_in(cond_map)
        v = emb  # (B, E, h, w)
        for layer in self.layers:
            v, h = layer(v, h, cond_map)
        return self.head(h)  # (B, K, h, w)


def nll_bits_per_code(logits: Tensor, codes: Tensor) -> Tensor:
    """Mean negative log-likelihood in bits per code.

    logits: (B, K, h, w) float; codes: (B, h, w) int64 in [0, K) -> scalar tensor.
    """
    if (
        logits.dim() != 4
        or codes.dim() != 3
        or logits.shape[0] != codes.shape[0]
        or logits.shape[2:] != codes.shape[1:]
    ):
        raise ValueError(
            f"logits/codes: expected (B, K, h, w) and (B, h, w), "
            f"got {tuple(logits.shape)} and {tuple(codes.shape)}"
        )
    return F.cross_entropy(logits, codes) / math.log(2.0)
