"""ONNX export of the PixelCNN prior's cached sampler, for generation without PyTorch.

The cached sampler (brainvq.inference.sampling) splits the work of drawing a code map into two
kinds of step; each becomes one ONNX graph whose caches are explicit inputs and outputs, and
brainvq.edge drives both with numpy:

- `prior_row.onnx`, the vertical pass, once per row: given row r's final codes and the
  vertical stacks' last rows (state `emb_rows`, `v_rows_1` .. `v_rows_{L-1}`), it updates that
  state and returns what the horizontal pass of row r + 1 reads: `first_row` (the first masked
  convolution's part from the rows above, plus its bias and condition) and `v_to_h` (each
  layer's vertical-to-horizontal input, plus its biases and condition), both column first so
  that column j is one contiguous slice. Row -1 prepares row 0: there is no row above it, so
  the new rows it would add are zeroed and the state stays zero.
- `prior_position.onnx`, the horizontal pass, once per position: given the code just drawn to
  the left (`prev_code`; NO_CODE, whose embedding is zero, at column 0), the row's inputs at
  this column and the horizontal stacks' last columns (state `left_emb`, `h_left`), it returns
  the logits (n, K) and the updated state.

The ConditionMap depends only on the level and the position, so it is computed here in
PyTorch for every level at the VQ-VAE's code map size and stored in the row graph as a constant
(n_levels x Cc x h x w; one map for a model without levels). The graphs therefore serve only
that code map size (export.json: prior.latent_shape).

A prior of whole subjects (`neighbour: previous`) adds `prior_neighbour.onnx`: the NeighbourMap
of the slice below's code map (`below`, -1 for none) -> `below_map` (n, Cc, h, w), run once per
slice; the row graph then takes `below_map` and adds its rows to the stored ConditionMap's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainvq.edge import (
    BELOW,
    BELOW_MAP,
    LEVEL,
    NO_CODE_NOTE,
    POSITION_INPUTS,
    POSITION_OUTPUTS,
    POSITION_STATE,
    PRIOR_NEIGHBOUR_FILE,
    PRIOR_POSITION_FILE,
    PRIOR_ROW_FILE,
    ROW_INPUTS,
    ROW_OUTPUTS,
    EdgePrior,
    next_name,
    teacher_forced_logits,
)
from brainvq.io.onnx_trace import trace_to_onnx
from brainvq.models.pixelcnn import GatedPixelCNN, gate

PRIOR_FILES = (PRIOR_ROW_FILE, PRIOR_POSITION_FILE)

# The export check: teacher-forced logits of the ONNX graphs vs the full PyTorch forward pass on
# random code maps. Float32 runtimes agree to ~1e-6 here; more means the graphs compute
# something else.
LOGITS_TOLERANCE = 1e-3
CHECK_MAPS = 2
CHECK_SEED = 0


def _cond_rows(
    cond: Tensor | None, row: Tensor, level: Tensor | None, below_map: Tensor | None
) -> Tensor | None:
    """Row `row` (a (1,) int64 tensor) of the condition: the stored ConditionMap's (by level)
    plus the slice below's features (n, Cc, h, w) when given: (n or 1, Cc, 1, w) or None."""
    rows = None
    if cond is not None:
        rows = cond.index_select(2, row)  # (levels or 1, Cc, 1, w)
        rows = rows if level is None else rows.index_select(0, level)  # (n, Cc, 1, w)
    if below_map is not None:
        near = below_map.index_select(2, row)  # (n, Cc, 1, w)
        rows = near if rows is None else rows + near
    return rows


class NeighbourStep(nn.Module):
    """The features of the slice below, once per slice: below (n, h, w) int64 in [-1, K) ->
    below_map (n, Cc, h, w) float32."""

    def __init__(self, model: GatedPixelCNN) -> None:
        super().__init__()
        self.neighbour = model.neighbour

    def forward(self, below: Tensor) -> Tensor:
        return self.neighbour(below)


class RowStep(nn.Module):
    """The vertical pass of one row (finish_row(r) and start_row(r + 1) of the cached sampler).

    forward(codes (n, w) int64, row (1,) int64, [level (n,) int64,] [below_map (n, Cc, h, w),]
    emb_rows (n, E, pad, w), v_rows_1 .. v_rows_{L-1} (n, C, k//2, w)) -> (next state in the
    same order, first_row (w, n, C), v_to_h (w, n, L, 2C)), all float32.
    """

    def __init__(self, model: GatedPixelCNN, h: int, w: int) -> None:
        super().__init__()
        cfg = model.config
        self.fh, self.half = cfg.first_kernel // 2, cfg.kernel_size // 2
        self.pad = max(self.fh, self.half)
        self.conditional = cfg.n_levels > 0
        self.has_below = cfg.has_neighbour
        self.embedding = model.embedding
        self.layers = model.layers
        self.cond_in = model.cond_in
        first = model.first_conv.masked_weight().detach()  # (C, E, fk, fk)
        self.register_buffer("first_above", first[:, :, : self.fh].clone())  # rows above
        self.register_buffer("first_bias", model.first_conv.bias.detach().clone())
        levels = torch.arange(cfg.n_levels) if self.conditional else None
        with torch.no_grad():  # the ConditionMap alone: the slice below comes as below_map
            cond = None if model.condition is None else model.condition(levels, h, w)
        self.register_buffer("cond", None if cond is None else cond.detach().clone())

    def _cond_bias(self, li: int, cond: Tensor | None) -> Tensor | float:
        """Layer li's projection of a ConditionMap row: (n or 1, 2C, 1, w), or 0 without one."""
        layer = self.layers[li]
        return 0.0 if cond is None or layer.cond is None else layer.cond(cond)

    def forward(self, codes: Tensor, row: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        level, rest = (rest[0], rest[1:]) if self.conditional else (None, rest)
        below_map, (emb_rows, *v_rows) = (rest[0], rest[1:]) if self.has_below else (None, rest)
        half, pad, fh = self.half, self.pad, self.fh
        valid = (row >= 0).to(emb_rows.dtype)  # (1,): 0 for row -1, which only prepares row 0
        emb_row = self.embedding(codes).transpose(1, 2)[:, :, None] * valid  # (n, E, 1, w)
        # (n or 1, Cc, 1, w) or None; row -1 wraps to the last row, its gated row is zeroed
        cond_here = _cond_rows(self.cond, row, level, below_map)
        cond_next = _cond_rows(self.cond, row + 1, level, below_map)
        next_emb = torch.cat([emb_rows, emb_row], dim=2)[:, :, 1:]  # (n, E, pad, w)
        window = torch.cat([emb_rows[:, :, pad - half :], emb_row], dim=2)  # (n, E, half + 1, w)
        next_v, v_to_h = [], []
        for li, layer in enumerate(self.layers):
            v_pre = layer.v_conv(F.pad(window, (half, half)))  # (n, 2C, 1, w)
            to_h = layer.v_to_h(v_pre) * valid + layer.h_conv.bias[:, None, None]
            to_h = to_h + self._cond_bias(li, cond_next)  # (n, 2C, 1, w)
            v_to_h.append(to_h[:, :, 0].permute(2, 0, 1))  # (w, n, 2C)
            if li + 1 < len(self.layers):  # layer li + 1 reads this layer's gated rows
                new_row = gate(v_pre + self._cond_bias(li, cond_here)) * valid  # (n, C, 1, w)
                window = torch.cat([v_rows[li], new_row], dim=2)  # (n, C, half + 1, w)
                next_v.append(window[:, :, 1:])
        above = F.pad(next_emb[:, :, pad - fh :], (fh, fh))  # (n, E, fh, w + 2fh): rows r+1-fh..r
        first = F.conv2d(above, self.first_above, self.first_bias)  # (n, C, 1, w)
        if cond_next is not None:
            first = first + self.cond_in(cond_next)
        first_row = first[:, :, 0].permute(2, 0, 1)  # (w, n, C)
        return (next_emb, *next_v, first_row, torch.stack(v_to_h, dim=2))  # v_to_h (w, n, L, 2C)


class PositionStep(nn.Module):
    """The horizontal pass at one position (set_code of the left neighbour, then logits_at).

    forward(prev_code (n,) int64 in [0, K] (K: none), left_emb (n, fh, E), h_left (n, L, k//2,
    C), first (n, C), to_h (n, L, 2C)) -> (logits (n, K), next left_emb, next h_left).
    """

    def __init__(self, model: GatedPixelCNN) -> None:
        super().__init__()
        cfg = model.config
        self.fh, self.half = cfg.first_kernel // 2, cfg.kernel_size // 2
        self.layers = model.layers
        self.head = model.head
        weight = model.embedding.weight.detach()  # (K, E)
        self.register_buffer("embedding", torch.cat([weight, weight.new_zeros(1, weight.shape[1])]))
        first = model.first_conv.masked_weight().detach()  # (C, E, fk, fk)
        left = first[:, :, self.fh, : self.fh].permute(0, 2, 1).reshape(first.shape[0], -1)
        self.register_buffer("first_left", left.t().contiguous())  # (fh * E, C)
        h_weights = [
            layer.h_conv.masked_weight()
            .detach()[:, :, 0, : self.half + 1]  # (2C, C, half + 1)
            .permute(0, 2, 1)
            .reshape(2 * cfg.channels, -1)
            .t()  # ((half + 1) * C, 2C)
            for layer in model.layers
        ]
        self.register_buffer("h_weight", torch.stack(h_weights))  # (L, (half + 1) * C, 2C)

    def forward(
        self, prev_code: Tensor, left_emb: Tensor, h_left: Tensor, first: Tensor, to_h: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        new = F.embedding(prev_code, self.embedding)[:, None]  # (n, 1, E)
        left = torch.cat([left_emb[:, 1:], new], dim=1)  # (n, fh, E): columns j - fh .. j - 1
        x = first + left.flatten(1) @ self.first_left  # (n, C)
        next_h = []
        for li, layer in enumerate(self.layers):
            window = torch.cat([h_left[:, li], x[:, None]], dim=1)  # (n, half + 1, C)
            next_h.append(window[:, 1:])
            pre = to_h[:, li] + window.flatten(1) @ self.h_weight[li]  # (n, 2C)
            x = x + layer.h_out(gate(pre)[:, :, None, None])[:, :, 0, 0]  # (n, C)
        logits = self.head(x[:, :, None, None])[:, :, 0, 0]  # (n, K)
        return logits, left, torch.stack(next_h, dim=1)


def state_shapes(model: GatedPixelCNN, h: int, w: int) -> dict[str, dict[str, list[int]]]:
    """Per-sample shapes of the graphs' caches: {"row": {...}, "position": {...}}."""
    cfg = model.config
    fh, half = cfg.first_kernel // 2, cfg.kernel_size // 2
    c, layers = cfg.channels, cfg.n_layers
    row = {"emb_rows": [cfg.embed_dim, max(fh, half), w]}
    row |= {f"v_rows_{li}": [c, half, w] for li in range(1, layers)}
    position = {"left_emb": [fh, cfg.embed_dim], "h_left": [layers, half, c]}
    return {"row": row, "position": position}


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str]):
    """Trace `module` to ONNX with the batch axis of every input and output dynamic."""
    axes = {name: {0: "batch"} for name in inputs if name != "row"}
    axes |= {name: {0: "batch"} for name in outputs}
    for name in ("first_row", "v_to_h"):  # column first, batch second
        if name in axes:
            axes[name] = {1: "batch"}
    trace_to_onnx(module, args, path, inputs, outputs, axes)


def write_prior_graphs(model: GatedPixelCNN, latent: tuple[int, int], folder: Path) -> dict:
    """Export the row and position graphs of `model` (eval mode, float32, on the CPU) for code
    maps of size `latent` into `folder`; returns export.json's `prior` entry."""
    h, w = latent
    cfg = model.config
    n = CHECK_MAPS
    shapes = state_shapes(model, h, w)
    row_state = list(shapes["row"])
    level = [LEVEL] if cfg.n_levels > 0 else []
    below = [BELOW_MAP] if cfg.has_neighbour else []
    row_inputs = [*ROW_INPUTS, *level, *below, *row_state]
    row_outputs = [*map(next_name, row_state), *ROW_OUTPUTS]
    example = [torch.zeros(n, w, dtype=torch.int64), torch.tensor([0])]
    example += [torch.zeros(n, dtype=torch.int64)] * len(level)
    example += [torch.zeros(n, cfg.cond_channels, h, w)] * len(below)
    example += [torch.zeros(n, *shape) for shape in shapes["row"].values()]
    _export(RowStep(model, h, w), tuple(example), folder / PRIOR_ROW_FILE, row_inputs, row_outputs)
    c, layers = cfg.channels, cfg.n_layers
    example = [torch.zeros(n, dtype=torch.int64)]
    example += [torch.zeros(n, *shape) for shape in shapes["position"].values()]
    example += [torch.zeros(n, c), torch.zeros(n, layers, 2 * c)]
    position_outputs = [*POSITION_OUTPUTS, *map(next_name, POSITION_STATE)]
    _export(
        PositionStep(model),
        tuple(example),
        folder / PRIOR_POSITION_FILE,
        list(POSITION_INPUTS),
        position_outputs,
    )
    neighbour = None
    if cfg.has_neighbour:
        below_codes = torch.zeros(n, h, w, dtype=torch.int64)
        _export(
            NeighbourStep(model),
            (below_codes,),
            folder / PRIOR_NEIGHBOUR_FILE,
            [BELOW],
            [BELOW_MAP],
        )
        neighbour = {"file": PRIOR_NEIGHBOUR_FILE, "inputs": [BELOW], "outputs": [BELOW_MAP]}
    return {
        "neighbour": neighbour,
        "row": {"file": PRIOR_ROW_FILE, "inputs": row_inputs, "outputs": row_outputs},
        "position": {
            "file": PRIOR_POSITION_FILE,
            "inputs": list(POSITION_INPUTS),
            "outputs": position_outputs,
        },
        "state": shapes,
        "latent_shape": [h, w],
        "codebook_size": cfg.codebook_size,
        "n_levels": cfg.n_levels,
        "no_code": cfg.codebook_size,
        "no_code_note": NO_CODE_NOTE,
    }


def check_prior_graphs(model: GatedPixelCNN, folder: Path, entry: dict[str, Any]) -> dict:
    """Teacher-forced logits of the graphs in `folder` (described by `entry`, driven by
    brainvq.edge) vs the PyTorch forward pass on CHECK_MAPS random code maps; RuntimeError
    beyond LOGITS_TOLERANCE."""
    cfg = model.config
    g = torch.Generator().manual_seed(CHECK_SEED)
    shape = (CHECK_MAPS, *entry["latent_shape"])
    codes = torch.randint(0, cfg.codebook_size, shape, generator=g)
    level = torch.randint(0, cfg.n_levels, (CHECK_MAPS,), generator=g) if cfg.n_levels else None
    below = None
    if cfg.has_neighbour:  # a slice below, and no slice below for the last map
        below = torch.randint(0, cfg.codebook_size, shape, generator=g)
        below[-1] = -1
    with torch.inference_mode():
        want = model(codes, level, below).numpy()  # (n, K, h, w)
    prior = EdgePrior(folder, entry)
    got = teacher_forced_logits(
        prior,
        codes.numpy(),
        None if level is None else level.numpy(),
        None if below is None else below.numpy(),
    )
    gap = float(np.abs(got - want).max())
    if gap > LOGITS_TOLERANCE:
        raise RuntimeError(
            f"the exported prior's logits differ from PyTorch by up to {gap:.3g} (tolerance "
            f"{LOGITS_TOLERANCE}); the ONNX exporter changed the network, please report this"
        )
    return {
        "maps": f"{CHECK_MAPS} random code maps, seed {CHECK_SEED}, teacher forced",
        "logits_max_abs_diff": gap,
    }
