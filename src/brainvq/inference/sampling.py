"""Sampling code maps from a GatedPixelCNN: the naive reference and the fast cached sampler.

Both samplers share one source of randomness: a uniform per (sample, position) drawn up front
from a seeded CPU torch.Generator, turned into a code by inverse-CDF sampling on
softmax(logits / temperature) (optionally restricted to the top-k logits). Given the same seed
they therefore produce the same code maps; they differ only in how they compute the logits.

- "naive" runs the whole network on the whole map for every position: h * w full passes.
- "cached" keeps each layer's vertical-stack activations: once a row is final, the vertical
  stacks of the next row are computed from it in one row-sized pass, and within a row only the
  horizontal stack runs, on the k//2 + 1 columns its kernel reads. Each position then costs a
  few small matrix products per layer instead of a full pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import Tensor

from brainvq.inference.threads import intra_op_threads, sampler_threads
from brainvq.models.pixelcnn import GatedPixelCNN, gate

SAMPLERS = ("naive", "cached")


def sample(
    model: GatedPixelCNN,
    n: int,
    shape: tuple[int, int],
    *,
    level: Tensor | int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    sampler: str = "cached",
    init_codes: Tensor | None = None,
    keep_rows: int = 0,
    progress: bool = False,
    threads: int | None = None,
) -> Tensor:
    """Draw n code maps of size shape = (h, w) from the prior.

    level: slice level, an int for all samples or an (n,) int64 tensor in [0, n_levels); None
    for an unconditional model. temperature > 0 (-> 0 approaches argmax decoding); top_k in
    [1, K] keeps the k most likely codes at each step. init_codes: (n, h, w) int64 in [0, K),
    whose first keep_rows rows are kept (the rest is ignored and sampled). threads: intra-op
    threads while sampling (None: brainvq.inference.threads.sampler_threads' policy).
    The model is put in eval mode for the call and restored afterwards.
    Returns (n, h, w) int64 in [0, K) on the model's device.
    """
    k = model.config.codebook_size
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    if len(shape) != 2 or any(isinstance(s, bool) or not isinstance(s, int) for s in shape):
        raise ValueError(f"shape: expected (h, w) integers, got {shape!r}")
    h, w = shape
    if h < 1 or w < 1:
        raise ValueError(f"shape: expected h, w >= 1, got {shape!r}")
    if not temperature > 0:
        raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")
    if top_k is not None and not 1 <= top_k <= k:
        raise ValueError(f"top_k: expected None or an integer in [1, {k}], got {top_k!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {list(SAMPLERS)}, got {sampler!r}")
    if not 0 <= keep_rows <= h:
        raise ValueError(f"keep_rows: expected an integer in [0, {h}], got {keep_rows!r}")
    device = next(model.parameters()).device
    codes = torch.zeros(n, h, w, dtype=torch.int64, device=device)
    if init_codes is not None:
        if init_codes.shape != (n, h, w) or init_codes.dtype != torch.int64:
            raise ValueError(
                f"init_codes: expected an ({n}, {h}, {w}) int64 tensor, "
                f"got {tuple(init_codes.shape)} {init_codes.dtype}"
            )
        kept = init_codes[:, :keep_rows]  # (n, keep_rows, w)
        if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= k):
            raise ValueError(
                f"init_codes: expected values in [0, {k}) in the kept rows, "
                f"got [{int(kept.min())}, {int(kept.max())}]"
            )
        codes[:, :keep_rows] = kept.to(device)
    elif keep_rows > 0:
        raise ValueError(f"init_codes: keep_rows={keep_rows} needs the code maps to keep")
    level_t = _level_tensor(model, level, n, device)
    model.check_inputs(codes, level_t)
    generator = torch.Generator().manual_seed(seed)
    uniforms = torch.rand(n, h, w, generator=generator, dtype=torch.float64).to(device)

    def draw(logits: Tensor, i: int, j: int) -> Tensor:
        return draw_codes(logits, uniforms[:, i, j], temperature, top_k)

    run = _sample_naive if sampler == "naive" else _sample_cached
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), intra_op_threads(sampler_threads(n, threads)):
            run(model, codes, level_t, keep_rows, draw, _rows(keep_rows, h, progress, sampler))
    finally:
        model.train(was_training)
    return codes


def complete(
    model: GatedPixelCNN,
    codes: Tensor,
    keep_rows: int,
    n: int = 1,
    *,
    level: Tensor | int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    sampler: str = "cached",
    progress: bool = False,
    threads: int | None = None,
) -> Tensor:
    """Keep the first keep_rows latent rows of each code map and sample the rest, n times.

    codes: (B, h, w) int64 in [0, K); level: an int, a (B,) int64 tensor (one level per input
    map) or None. Returns (B * n, h, w) int64: the n completions of codes[b] are rows
    b * n .. b * n + n - 1.
    """
    if codes.dim() != 3:
        raise ValueError(f"codes: expected a (B, h, w) tensor, got {tuple(codes.shape)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    batch, h, w = codes.shape
    if isinstance(level, Tensor):
        if level.shape != (batch,):
            raise ValueError(
                f"level: expected an int or a ({batch},) tensor, got shape {tuple(level.shape)}"
            )
        level = level.repeat_interleave(n)  # (B * n,)
    return sample(
        model,
        batch * n,
        (h, w),
        level=level,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        sampler=sampler,
        init_codes=codes.repeat_interleave(n, dim=0),  # (B * n, h, w)
        keep_rows=keep_rows,
        progress=progress,
        threads=threads,
    )


def teacher_forced_logits(
    model: GatedPixelCNN, codes: Tensor, level: Tensor | int | None = None
) -> Tensor:
    """The cached sampler's logits for given code maps, as model(codes, level) would give them.

    codes: (B, h, w) int64 in [0, K) -> (B, K, h, w) float. For checking the cache against the
    full forward pass.
    """
    if codes.dim() != 3:
        raise ValueError(f"codes: expected a (B, h, w) tensor, got {tuple(codes.shape)}")
    n, h, w = codes.shape
    level_t = _level_tensor(model, level, n, codes.device)
    model.check_inputs(codes, level_t)
    out = torch.empty(n, model.config.codebook_size, h, w, device=codes.device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            cache = _RowCache(model, n, h, w, level_t)
            for i in range(h):
                cache.start_row(i)
                for j in range(w):
                    out[:, :, i, j] = cache.logits_at(j)
                    cache.set_code(j, codes[:, i, j])
                cache.finish_row(i, codes[:, i])
    finally:
        model.train(was_training)
    return out


def draw_codes(logits: Tensor, uniforms: Tensor, temperature: float, top_k: int | None) -> Tensor:
    """Inverse-CDF draw from softmax(logits / temperature), restricted to the top-k logits.

    logits: (n, K) float; uniforms: (n,) float in [0, 1) -> (n,) int64 in [0, K).
    """
    z = logits.double() / temperature  # (n, K)
    if top_k is not None and top_k < z.shape[1]:
        kth = z.topk(top_k, dim=1).values[:, -1:]  # (n, 1)
        z = z.masked_fill(z < kth, float("-inf"))
    cdf = torch.softmax(z, dim=1).cumsum(dim=1)  # (n, K)
    target = (uniforms.double() * cdf[:, -1]).unsqueeze(1)  # (n, 1)
    # right=True picks the first code whose CDF exceeds the target: never a zero-probability one
    idx = torch.searchsorted(cdf, target, right=True).squeeze(1)  # (n,)
    return idx.clamp_max(z.shape[1] - 1)


def _level_tensor(
    model: GatedPixelCNN, level: Tensor | int | None, n: int, device: torch.device
) -> Tensor | None:
    n_levels = model.config.n_levels
    if level is None:
        if n_levels > 0:
            raise ValueError(
                f"level: this model is conditioned on the slice level; pass a level in "
                f"[0, {n_levels})"
            )
        return None
    if n_levels == 0:
        raise ValueError("level: this model is unconditional (n_levels=0); pass level=None")
    if isinstance(level, bool) or not isinstance(level, (int, Tensor)):
        raise ValueError(f"level: expected an int, an ({n},) tensor or None, got {level!r}")
    if isinstance(level, int):
        if not 0 <= level < n_levels:
            raise ValueError(f"level: expected a level in [0, {n_levels}), got {level}")
        return torch.full((n,), level, dtype=torch.int64, device=device)
    if level.shape != (n,) or level.dtype.is_floating_point or level.dtype.is_complex:
        raise ValueError(
            f"level: expected an ({n},) integer tensor, got {tuple(level.shape)} {level.dtype}"
        )
    return level.to(device=device, dtype=torch.int64)


def _rows(start: int, h: int, progress: bool, sampler: str) -> Iterator[int]:
    if not progress:
        yield from range(start, h)
        return
    with Progress(transient=True) as bar:
        task = bar.add_task(f"sampling rows ({sampler})", total=h - start)
        for i in range(start, h):
            yield i
            bar.advance(task)


Draw = Callable[[Tensor, int, int], Tensor]


def _sample_naive(
    model: GatedPixelCNN,
    codes: Tensor,
    level: Tensor | None,
    keep_rows: int,
    draw: Draw,
    rows: Iterator[int],
) -> None:
    """The reference: one full forward pass per sampled position. Fills codes in place."""
    for i in rows:
        for j in range(codes.shape[2]):
            codes[:, i, j] = draw(model(codes, level)[:, :, i, j], i, j)


def _sample_cached(
    model: GatedPixelCNN,
    codes: Tensor,
    level: Tensor | None,
    keep_rows: int,
    draw: Draw,
    rows: Iterator[int],
) -> None:
    """Row-cached sampling (same logits as the naive sampler). Fills codes in place."""
    cache = _RowCache(model, codes.shape[0], codes.shape[1], codes.shape[2], level)
    for r in range(keep_rows):
        cache.finish_row(r, codes[:, r])
    for i in rows:
        cache.start_row(i)
        for j in range(codes.shape[2]):
            codes[:, i, j] = draw(cache.logits_at(j), i, j)
            cache.set_code(j, codes[:, i, j])
        if i + 1 < codes.shape[1]:
            cache.finish_row(i, codes[:, i])


class _RowCache:
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
