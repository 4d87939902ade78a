"""The row cache of the fast samplers: a GatedPixelCNN's per-layer activations (eval mode) kept
so that sampling, completing or healing a code map costs a few small matrix products per layer
per position instead of a full forward pass (brainvq.inference.sampling: `cached`; healing).

Once a row is final, the vertical stacks of the next row are computed from it in one row-sized
pass (`finish_row`); within a row only the horizontal stack runs, on the k//2 + 1 columns its
kernel reads (`logits_at`, `set_code`). The logits equal the full forward pass's (tested against
the naive reference, which runs the whole network per position).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from brainvq.models.pixelcnn import GatedPixelCNN, gate


class RowCache:
    """Per-layer activations of a GatedPixelCNN (eval mode) for row-by-row sampling.

    Vertical stacks (channels first) live in zero-padded full-map buffers, row r at r + pad,
    column c at c + pad; the current row's horizontal stacks live in channels-last row buffers,
    column c at c + k//2, so a kernel window is a contiguous (n, k//2 + 1, C) slice.
    """

    def __init__(self, model: GatedPixelCNN, n: int, h: int, w: int, level: Tensor | None) -> None:
        cfg = model.config
        self.model, self.n, self.h, self.w = model, n, h, w
        self.fh, self.half = cfg.first_kernel // 2, cfg.kernel_size // 2
        self.pad = max(self.fh, self.half)
        dev, dt = model.embedding.weight.device, model.embedding.weight.dtype
        c, e = cfg.channels, cfg.embed_dim
        # vertical inputs of each layer: the embedding, then the gated outputs of layers 0..L-2
        self.v_in = [torch.zeros(n, e, h + self.pad, w + 2 * self.pad, device=dev, dtype=dt)]
        self.v_in += [
            torch.zeros(n, c, h + self.pad, w + 2 * self.pad, device=dev, dtype=dt)
            for _ in range(cfg.n_layers - 1)
        ]
        self.row_emb = torch.zeros(n, w + self.fh, e, device=dev, dtype=dt)
        self.h_in = [
            torch.zeros(n, w + self.half, c, device=dev, dtype=dt) for _ in range(cfg.n_layers)
        ]
        first = model.first_conv.masked_weight()  # (C, E, fk, fk)
        self.first_above = first[:, :, : self.fh]  # (C, E, fh, fk): rows above the centre
        self.first_left = first[:, :, self.fh, : self.fh].permute(0, 2, 1).reshape(c, -1).t()
        if model.cond_in is not None:
            self.cond_in_weight = model.cond_in.weight[:, :, 0, 0].t()  # (Cc, C)
        cond_map = model.condition_map(level, h, w)  # (n or 1, Cc, h, w) or None
        # the map row by row, channels last: (h, n, w, Cc)
        self.cond_rows = (
            None if cond_map is None else cond_map.expand(n, -1, -1, -1).permute(2, 0, 3, 1)
        )
        self.no_bias = torch.zeros(n, w, 2 * c, device=dev, dtype=dt)
        self.cond_weight = [
            None if layer.cond is None else layer.cond.weight[:, :, 0, 0].t()  # (Cc, 2C)
            for layer in model.layers
        ]
        self.h_weight = [
            layer.h_conv.masked_weight()[:, :, 0, : self.half + 1]  # (2C, C, half + 1)
            .permute(0, 2, 1)
            .reshape(2 * c, -1)
            .t()  # ((half + 1) * C, 2C)
            for layer in model.layers
        ]
        self.out_weight = [layer.h_out.weight[:, :, 0, 0].t() for layer in model.layers]
        head = model.head
        self.head = (head[1].weight[:, :, 0, 0].t(), head[1].bias)
        self.head += (head[3].weight[:, :, 0, 0].t(), head[3].bias)
        # the horizontal stacks' row inputs: v_to_h of the vertical stack one row up, plus biases
        self.v_to_h = [  # row 0: no row above, only the biases
            layer.h_conv.bias + self._cond_bias(li, 0) for li, layer in enumerate(model.layers)
        ]
        self.first_row: Tensor | None = None

    def _cond_bias(self, li: int, r: int) -> Tensor:
        """Layer li's projection of the ConditionMap at row r: (n, w, 2C) (zeros without one)."""
        weight = self.cond_weight[li]
        if weight is None or self.cond_rows is None:
            return self.no_bias
        return self.cond_rows[r] @ weight  # (n, w, 2C)

    def _v_to_h(self, li: int, v_pre: Tensor, r: int) -> Tensor:
        """v_pre: (n, 2C, 1, w) raw vertical pre-activation of row r - 1 -> (n, w, 2C), the
        horizontal stack's input at row r."""
        layer = self.model.layers[li]
        out = layer.v_to_h(v_pre)[:, :, 0].transpose(1, 2)  # (n, w, 2C)
        return out + layer.h_conv.bias + self._cond_bias(li, r)

    def finish_row(self, r: int, row_codes: Tensor) -> None:
        """row_codes: (n, w) int64, final -> vertical stacks of row r, horizontal input of r + 1."""
        p, half, w = self.pad, self.half, self.w
        last = r + 1 == self.h  # no row below to prepare
        self.v_in[0][:, :, r + p, p : p + w] = self.model.embedding(row_codes).transpose(1, 2)
        for li, layer in enumerate(self.model.layers):
            window = self.v_in[li][:, :, r + p - half : r + p + 1, p - half : p + w + half]
            v_pre = layer.v_conv(window)  # (n, 2C, 1, w)
            if not last:
                self.v_to_h[li] = self._v_to_h(li, v_pre, r + 1)
            if li + 1 < len(self.v_in):
                v_pre = v_pre + self._cond_bias(li, r).transpose(1, 2)[:, :, None]  # (n, 2C, 1, w)
                self.v_in[li + 1][:, :, r + p, p : p + w] = gate(v_pre)[:, :, 0]

    def start_row(self, i: int) -> None:
        """Prepare row i: the first convolution's part that reads the rows above."""
        p, fh, w = self.pad, self.fh, self.w
        window = self.v_in[0][:, :, i + p - fh : i + p, p - fh : p + w + fh]  # (n, E, fh, w + 2fh)
        above = F.conv2d(window, self.first_above, self.model.first_conv.bias)  # (n, C, 1, w)
        self.first_row = above[:, :, 0].transpose(1, 2)  # (n, w, C)
        if self.cond_rows is not None:
            self.first_row = self.first_row + self.cond_rows[i] @ self.cond_in_weight
        self.row_emb.zero_()
        for buf in self.h_in:
            buf.zero_()

    def set_code(self, j: int, code: Tensor) -> None:
        """code: (n,) int64 now fixed at column j of the current row."""
        self.row_emb[:, j + self.fh] = self.model.embedding(code)

    def logits_at(self, j: int) -> Tensor:
        """-> (n, K) logits at column j of the current row (columns < j set)."""
        half = self.half
        left = self.row_emb[:, j : j + self.fh].reshape(self.n, -1)  # (n, fh * E)
        x = torch.addmm(self.first_row[:, j], left, self.first_left)  # (n, C)
        for li, layer in enumerate(self.model.layers):
            self.h_in[li][:, j + half] = x
            window = self.h_in[li][:, j : j + half + 1].reshape(self.n, -1)  # (n, (half+1) * C)
            pre = torch.addmm(self.v_to_h[li][:, j], window, self.h_weight[li])  # (n, 2C)
            x = x + torch.addmm(layer.h_out.bias, gate(pre), self.out_weight[li])  # (n, C)
        w1, b1, w2, b2 = self.head
        hidden = torch.addmm(b1, torch.relu(x), w1).relu_()  # (n, head_channels)
        return torch.addmm(b2, hidden, w2)  # (n, K)
