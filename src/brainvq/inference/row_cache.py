"""The row cache of the fast samplers: a GatedPixelCNN's per-layer activations (eval mode) kept
so that sampling, completing or healing a code map costs a few small matrix products per layer
per position instead of a full forward pass (brainvq.inference.sampling: `cached`; healing).

Once a row is final, the vertical stacks of the next row are computed from it in one row-sized
pass (`finish_row`); within a row only the horizontal stack runs, on the k//2 + 1 columns its
kernel reads (`logits_at`, `set_code`). The logits equal the full forward pass's (tested against
the naive reference, which runs the whole network per position).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor

from brainvq.models.pixelcnn import GatedPixelCNN, gate


class RowCache:
    """Per-layer activations of a GatedPixelCNN (eval mode) for row-by-row sampling.

    level: (n,) int64 or None; below: (n, h, w) int64 in [-1, K), the slice below's code maps
    (a prior with the neighbour), or None. Vertical stacks (channels first) live in zero-padded
    full-map buffers of `rows` rows (default h), row r at r + pad, column c at c + pad; the
    current row's horizontal stacks live in channels-last row buffers, column c at c + k//2, so
    a kernel window is a contiguous (n, k//2 + 1, C) slice.

    The condition (ConditionMap + NeighbourMap) enters a row when it starts and when it is
    finished, never earlier. `start_row` / `finish_row` take it from the map made here;
    with condition_from_caller, none is made and the caller hands each row's condition to
    `start` / `finish` just in time (brainvq.inference.wavefront).
    """

    def __init__(
        self,
        model: GatedPixelCNN,
        n: int,
        h: int,
        w: int,
        level: Tensor | None,
        below: Tensor | None = None,
        rows: int | None = None,
        condition_from_caller: bool = False,
    ) -> None:
        cfg = model.config
        self.model, self.n, self.h, self.w = model, n, h, w
        self.fh, self.half = cfg.first_kernel // 2, cfg.kernel_size // 2
        self.pad = max(self.fh, self.half)
        dev, dt = model.embedding.weight.device, model.embedding.weight.dtype
        c, e = cfg.channels, cfg.embed_dim
        rows = h if rows is None else rows
        # vertical inputs of each layer: the embedding, then the gated outputs of layers 0..L-2
        self.v_in = [torch.zeros(n, e, rows + self.pad, w + 2 * self.pad, device=dev, dtype=dt)]
        self.v_in += [
            torch.zeros(n, c, rows + self.pad, w + 2 * self.pad, device=dev, dtype=dt)
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
        self.out_bias = [layer.h_out.bias for layer in model.layers]
        self.to_h_weight = [layer.v_to_h.weight[:, :, 0, 0].t() for layer in model.layers]
        # v_to_h's bias plus the horizontal convolution's: (2C,) per layer
        self.to_h_bias = [layer.v_to_h.bias + layer.h_conv.bias for layer in model.layers]
        head = model.head
        self.head = (head[1].weight[:, :, 0, 0].t(), head[1].bias)
        self.head += (head[3].weight[:, :, 0, 0].t(), head[3].bias)
        # the horizontal stacks' row inputs from the vertical stack one row up (v_to_h plus the
        # horizontal bias; row 0: no row above, only the bias), and with the row's condition
        self.from_above = [
            layer.h_conv.bias.expand(n, w, -1).contiguous() for layer in model.layers
        ]  # (n, w, 2C) each, updated in place
        self.v_to_h = list(self.from_above)
        self.first_row: Tensor | None = None
        self.cond_rows: Tensor | None = None  # the condition row by row: (h, n, w, Cc)
        if not condition_from_caller:
            # known before the first code is drawn: the level and the whole slice below
            cond_map = model.condition_map(level, h, w, below)  # (n or 1, Cc, h, w) or None
            if cond_map is not None:
                self.cond_rows = cond_map.expand(n, -1, -1, -1).permute(2, 0, 3, 1)

    def _cond_bias(self, li: int, cond: Tensor | None) -> Tensor | None:
        """Layer li's projection of a condition row cond (n, w, Cc): (n, w, 2C), or None."""
        weight = self.cond_weight[li]
        return None if weight is None or cond is None else cond @ weight

    def finish_row(self, r: int, row_codes: Tensor) -> None:
        """row_codes: (n, w) int64, final -> vertical stacks of row r, horizontal input of r + 1."""
        self.finish(r, row_codes, None if self.cond_rows is None else self.cond_rows[r])

    def start_row(self, i: int) -> None:
        """Prepare row i: the first convolution's part that reads the rows above."""
        self.start(i, None if self.cond_rows is None else self.cond_rows[i])

    def finish(self, r: int, row_codes: Tensor, cond: Tensor | None) -> None:
        """Buffer row r is final: row_codes (n, w) int64 its codes, cond (n, w, Cc) or None its
        condition -> the vertical stacks of row r and the horizontal input of row r + 1."""
        p, half, w = self.pad, self.half, self.w
        self.v_in[0][:, :, r + p, p : p + w] = self.model.embedding(row_codes).transpose(1, 2)
        for li, layer in enumerate(self.model.layers):
            window = self.v_in[li][:, :, r + p - half : r + p + 1, p - half : p + w + half]
            v_pre = layer.v_conv(window)  # (n, 2C, 1, w)
            # v_to_h (a 1x1 convolution) + the horizontal bias, in place (see narrow)
            torch.matmul(
                v_pre[:, :, 0].transpose(1, 2), self.to_h_weight[li], out=self.from_above[li]
            )
            self.from_above[li] += self.to_h_bias[li]  # (n, w, 2C)
            if li + 1 < len(self.v_in):
                bias = self._cond_bias(li, cond)
                if bias is not None:
                    v_pre = v_pre + bias.transpose(1, 2)[:, :, None]  # (n, 2C, 1, w)
                self.v_in[li + 1][:, :, r + p, p : p + w] = gate(v_pre)[:, :, 0]

    def narrow(self, start: int, stop: int) -> RowCache:
        """The cache of maps start .. stop - 1 only, sharing this one's buffers: what it writes
        (vertical stacks, the next row's input from above) is written here. A map that joins
        later finds its buffers as they were: zero, with no row above its next row."""
        view = copy.copy(self)
        view.n = stop - start
        view.v_in = [buf[start:stop] for buf in self.v_in]
        view.row_emb = self.row_emb[start:stop]
        view.h_in = [buf[start:stop] for buf in self.h_in]
        view.from_above = [buf[start:stop] for buf in self.from_above]
        view.v_to_h = list(view.from_above)
        view.cond_rows = None if self.cond_rows is None else self.cond_rows[:, start:stop]
        return view

    def start(self, i: int, cond: Tensor | None) -> None:
        """Prepare buffer row i, whose condition is cond (n, w, Cc) or None: the first
        convolution's part that reads the rows above, and each layer's row input."""
        p, fh, w = self.pad, self.fh, self.w
        window = self.v_in[0][:, :, i + p - fh : i + p, p - fh : p + w + fh]  # (n, E, fh, w + 2fh)
        above = F.conv2d(window, self.first_above, self.model.first_conv.bias)  # (n, C, 1, w)
        self.first_row = above[:, :, 0].transpose(1, 2)  # (n, w, C)
        if cond is not None:
            self.first_row = self.first_row + cond @ self.cond_in_weight
        for li in range(len(self.v_to_h)):
            bias = self._cond_bias(li, cond)
            above = self.from_above[li]
            self.v_to_h[li] = above if bias is None else above + bias
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
        for li, h_in in enumerate(self.h_in):
            h_in[:, j + half] = x
            window = h_in[:, j : j + half + 1].reshape(self.n, -1)  # (n, (half+1) * C)
            pre = torch.addmm(self.v_to_h[li][:, j], window, self.h_weight[li])  # (n, 2C)
            x = x + torch.addmm(self.out_bias[li], gate(pre), self.out_weight[li])  # (n, C)
        w1, b1, w2, b2 = self.head
        hidden = torch.addmm(b1, torch.relu(x), w1).relu_()  # (n, head_channels)
        return torch.addmm(b2, hidden, w2)  # (n, K)
