"""The NeighbourMap: features of the code map of the slice below, for a prior of whole subjects.

A prior with `neighbour: previous` (brainvq.models.pixelcnn) draws slice k of a subject given
the code map of slice k - 1. That map is known before slice k is drawn, so the features may
read all of it (here: a few plain, unmasked convolutions, seeing every direction) without
breaking the raster order inside slice k; they are added to the ConditionMap, which every gated
layer projects into its pre-activations, and so depend on no code of slice k.

Code maps of the slice below are (B, h, w) int64 in [-1, K): NO_SLICE (-1) marks a position
with no slice below (the lowest slice of a subject: a map of NO_SLICE), embedded as a code of
its own (row K of the embedding). The last convolution starts at zero, so an untrained
NeighbourMap adds nothing: a prior with the neighbour starts as the same prior without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NO_SLICE = -1  # a position (or a whole map) with no slice below


class NeighbourMap(nn.Module):
    """below: (B, h, w) int64 in [-1, K) -> (B, out_channels, h, w) float features.

    embedding (K + 1 rows, the last for NO_SLICE) -> layers x (kernel x kernel convolution,
    ReLU) -> 1x1 convolution to out_channels (zero at the start)."""

    def __init__(
        self, codebook_size: int, embed_dim: int, channels: int, layers: int, out_channels: int
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.embedding = nn.Embedding(codebook_size + 1, embed_dim)
        self.convs = nn.ModuleList(
            nn.Conv2d(embed_dim if i == 0 else channels, channels, 3, padding=1)
            for i in range(layers)
        )
        self.out = nn.Conv2d(channels if layers else embed_dim, out_channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def reach(self) -> int:
        """How many rows above and below row i of the slice below its features at row i read."""
        return len(self.convs)

    def _embed(self, below: Tensor) -> Tensor:
        index = torch.where(below == NO_SLICE, self.codebook_size, below)  # (B, ...) in [0, K]
        return self.embedding(index).permute(0, 3, 1, 2)  # (B, E, rows, w)

    def forward(self, below: Tensor) -> Tensor:
        x = self._embed(below)  # (B, E, h, w)
        for conv in self.convs:
            x = torch.relu(conv(x))  # (B, Cn, h, w)
        return self.out(x)  # (B, Cc, h, w)

    def row(self, window: Tensor, inside: Tensor) -> Tensor:
        """The features at one row i of the slice below from its rows i - reach .. i + reach.

        window: (B, 2 reach + 1, w) int64 in [-1, K), those rows (any value where they lie
        outside the map); inside: (B, 2 reach + 1) bool, which of them lie inside the map.
        Returns (B, Cc, w), equal to forward(below)[:, :, i]: each layer's activations outside
        the map are zeroed, as the full map's zero padding makes them."""
        x = self._embed(window) * inside[:, None, :, None]  # (B, E, 2R + 1, w)
        for conv in self.convs:
            x = torch.relu(F.conv2d(x, conv.weight, conv.bias, padding=(0, 1)))  # 2 rows fewer
            inside = inside[:, 1:-1]
            x = x * inside[:, None, :, None]
        return self.out(x)[:, :, 0]  # (B, Cc, w)


def no_slice_below(n: int, h: int, w: int, device: torch.device | str = "cpu") -> Tensor:
    """(n, h, w) int64 maps of NO_SLICE: n slices with nothing below them."""
    return torch.full((n, h, w), NO_SLICE, dtype=torch.int64, device=device)
