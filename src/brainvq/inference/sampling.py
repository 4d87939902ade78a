"""Sampling code maps from a GatedPixelCNN: the naive reference and the fast cached sampler.

Both samplers share one source of randomness: a uniform per (sample, position) drawn up front
from a seeded CPU torch.Generator, turned into a code by inverse-CDF sampling on
softmax(logits / temperature) (optionally restricted to the top-k logits). Given the same seed
they therefore produce the same code maps; they differ only in how they compute the logits.

- "naive" runs the whole network on the whole map for every position: h * w full passes.
- "cached" keeps each layer's vertical-stack activations: once a row is final, the vertical
  stacks of the next row are computed from it in one row-sized pass, and within a row only the
  horizontal stack runs, on the k//2 + 1 columns its kernel reads (brainvq.inference.row_cache).
  Each position then costs a few small matrix products per layer instead of a full pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from brainvq.inference.row_cache import RowCache
from brainvq.inference.threads import intra_op_threads, sampler_threads
from brainvq.models.eval_mode import eval_mode
from brainvq.models.pixelcnn import GatedPixelCNN
from brainvq.progress import Bar
from brainvq.values import POSITIVE, SEED

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
    below: Tensor | None = None,
    uniforms: Tensor | None = None,
    progress: bool = False,
    threads: int | None = None,
) -> Tensor:
    """Draw n code maps of size shape = (h, w) from the prior.

    level: slice level, an int for all samples or an (n,) int64 tensor in [0, n_levels); None
    for an unconditional model. temperature > 0 (-> 0 approaches argmax decoding); top_k in
    [1, K] keeps the k most likely codes at each step. init_codes: (n, h, w) int64 in [0, K),
    whose first keep_rows rows are kept (the rest is ignored and sampled). below: (n, h, w) int64
    in [-1, K), the code maps of the slices below these (a prior with the neighbour; None or -1:
    no slice below). uniforms: (n, h, w) float64 in [0, 1), one per draw, instead of those
    `seed` draws (brainvq.inference.subjects draws a subject's at once). threads: intra-op
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
    POSITIVE.check("temperature", temperature)
    SEED.check("seed", seed)
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
    level_t = level_tensor(model, level, n, device)
    below = None if below is None else below.to(device)
    model.check_inputs(codes, level_t, below)
    uniforms = uniforms_for(uniforms, n, (h, w), seed, device)

    def draw(logits: Tensor, i: int, j: int) -> Tensor:
        return draw_codes(logits, uniforms[:, i, j], temperature, top_k)

    run = _sample_naive if sampler == "naive" else _sample_cached
    with eval_mode(model), torch.inference_mode(), intra_op_threads(sampler_threads(n, threads)):
        rows = _rows(n, keep_rows, h, progress, sampler)
        run(model, codes, level_t, below, keep_rows, draw, rows)
    return codes


def draw_uniforms(n: int, shape: tuple[int, ...], seed: int) -> Tensor:
    """The uniforms `sample` draws for n maps of `shape` from `seed`: (n, *shape) float64 in
    [0, 1) on the CPU, from a seeded torch.Generator (the same on every machine)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=generator, dtype=torch.float64)


def uniforms_for(
    uniforms: Tensor | None, n: int, shape: tuple[int, int], seed: int, device: torch.device
) -> Tensor:
    """The uniforms of n maps of shape (h, w), on `device`: `uniforms` when given, checked to be
    an (n, h, w) float64 tensor, else those `seed` draws (`draw_uniforms`). The one check of
    the uniforms that `sample` and `heal` take."""
    if uniforms is None:
        uniforms = draw_uniforms(n, shape, seed)
    elif uniforms.shape != (n, *shape) or uniforms.dtype != torch.float64:
        raise ValueError(
            f"uniforms: expected a {(n, *shape)} float64 tensor, "
            f"got {tuple(uniforms.shape)} {uniforms.dtype}"
        )
    return uniforms.to(device)


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
    model: GatedPixelCNN,
    codes: Tensor,
    level: Tensor | int | None = None,
    below: Tensor | None = None,
) -> Tensor:
    """The cached sampler's logits for given code maps, as model(codes, level, below) would
    give them.

    codes: (B, h, w) int64 in [0, K); below: (B, h, w) int64 in [-1, K) or None -> (B, K, h, w)
    float. For checking the cache against the full forward pass.
    """
    if codes.dim() != 3:
        raise ValueError(f"codes: expected a (B, h, w) tensor, got {tuple(codes.shape)}")
    n, h, w = codes.shape
    level_t = level_tensor(model, level, n, codes.device)
    model.check_inputs(codes, level_t, below)
    out = torch.empty(n, model.config.codebook_size, h, w, device=codes.device)
    with eval_mode(model), torch.inference_mode():
        cache = RowCache(model, n, h, w, level_t, below)
        for i in range(h):
            cache.start_row(i)
            for j in range(w):
                out[:, :, i, j] = cache.logits_at(j)
                cache.set_code(j, codes[:, i, j])
            cache.finish_row(i, codes[:, i])
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


def level_tensor(
    model: GatedPixelCNN, level: Tensor | int | None, n: int, device: torch.device
) -> Tensor | None:
    """The conditioning level of n maps as an (n,) int64 tensor on `device` (None for an
    unconditional model), from an int, an (n,) integer tensor or None; ValueError naming
    `level` when it does not fit the model."""
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


def _rows(n: int, start: int, h: int, progress: bool, sampler: str) -> Iterator[int]:
    """The rows to sample, start..h-1, with a progress bar over them (brainvq.progress)."""
    with Bar(f"sampling {n} code maps ({sampler}), rows", h - start, progress) as bar:
        for i in range(start, h):
            yield i
            bar.advance()


Draw = Callable[[Tensor, int, int], Tensor]


def _sample_naive(
    model: GatedPixelCNN,
    codes: Tensor,
    level: Tensor | None,
    below: Tensor | None,
    keep_rows: int,
    draw: Draw,
    rows: Iterator[int],
) -> None:
    """The reference: one full forward pass per sampled position. Fills codes in place."""
    for i in rows:
        for j in range(codes.shape[2]):
            codes[:, i, j] = draw(model(codes, level, below)[:, :, i, j], i, j)


def _sample_cached(
    model: GatedPixelCNN,
    codes: Tensor,
    level: Tensor | None,
    below: Tensor | None,
    keep_rows: int,
    draw: Draw,
    rows: Iterator[int],
) -> None:
    """Row-cached sampling (same logits as the naive sampler). Fills codes in place."""
    cache = RowCache(model, codes.shape[0], codes.shape[1], codes.shape[2], level, below)
    for r in range(keep_rows):
        cache.finish_row(r, codes[:, r])
    for i in rows:
        cache.start_row(i)
        for j in range(codes.shape[2]):
            codes[:, i, j] = draw(cache.logits_at(j), i, j)
            cache.set_code(j, codes[:, i, j])
        if i + 1 < codes.shape[1]:
            cache.finish_row(i, codes[:, i])
