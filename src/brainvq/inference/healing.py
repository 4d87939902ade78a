"""Healing code maps: walk a map in raster order and resample the codes the prior finds unlikely.

At each position the prior's logits are computed given the *healed* prefix (the codes before it,
as healing has left them). If the input code there is unlikely, -log softmax(logits)[code] >
threshold (nats), it is replaced by a draw from the prior; otherwise it is kept. A map of a
healthy brain is mostly kept; the codes of something the prior never saw are redrawn as healthy
tissue that fits the kept surroundings above and to the left.

The two implementations mirror the samplers in brainvq.inference.sampling and share their
randomness: one uniform per (map, position), drawn up front exactly as `sample` draws them, turned
into a code by the same inverse-CDF draw. Given a seed they heal identically, so "cached ==
naive" is a test of equality; with a threshold that flags every code, healing is `sample` with
the same seed, and with one that flags none it returns the input.

- "naive": one full forward pass of the network per position (the reference).
- "cached": the row cache of the cached sampler (brainvq.inference.row_cache): a few small
  matrix products per layer per position.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from brainvq.inference.row_cache import RowCache
from brainvq.inference.sampling import SAMPLERS, draw_codes, level_tensor, uniforms_for
from brainvq.inference.threads import intra_op_threads, sampler_threads
from brainvq.models.eval_mode import eval_mode
from brainvq.models.pixelcnn import GatedPixelCNN
from brainvq.progress import Bar
from brainvq.values import POSITIVE, SEED

HEAL_BATCH = 128  # code maps healed together: the row cache's buffers grow with it


class Healing(NamedTuple):
    """The healings of B code maps, n_heal each: those of map b are rows b * n_heal + r.

    codes: (B * n_heal, h, w) int64 in [0, K), the healed maps.
    resampled: (B * n_heal, h, w) bool, where the input code was flagged and redrawn (a redraw
        may pick the same code again).
    nll: (B * n_heal, h, w) float32, -log p(input code | healed prefix, level, slice below) in
        nats: what was compared with the threshold.
    """

    codes: Tensor
    resampled: Tensor
    nll: Tensor


def heal(
    model: GatedPixelCNN,
    codes: Tensor,
    threshold: float,
    n_heal: int = 1,
    *,
    level: Tensor | int | None = None,
    below: Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    uniforms: Tensor | None = None,
    sampler: str = "cached",
    batch_size: int = HEAL_BATCH,
    progress: bool = False,
    threads: int | None = None,
) -> Healing:
    """Heal each code map n_heal times, independently.

    codes: (B, h, w) int64 in [0, K). threshold: a code whose NLL (nats) given the healed prefix
    is above it is resampled; +inf keeps every code, -inf resamples every one. level: an int, a
    (B,) int64 tensor (one level per input map) or None for an unconditional prior. below: the
    code maps of the slices below (a prior with the neighbour), int64 in [-1, K): (B, h, w), one
    per input map, or (B * n_heal, h, w), one per healing (healing r of map b reads row
    b * n_heal + r: the same healing of the slice below); None: no slice below. temperature
    and top_k shape the draws only; the NLL compared with the threshold is always the prior's
    own (temperature 1). The uniforms for all B * n_heal maps are drawn from `seed` exactly as
    `sample(model, B * n_heal, (h, w), seed=seed)` draws them (or are `uniforms`, (B * n_heal, h,
    w) float64 in [0, 1), when given: the anomaly maps of volumes heal slice by slice from one
    draw); the maps are then healed
    batch_size at a time, which changes nothing but the memory used. progress: a bar over the
    input maps. threads: intra-op threads (None: brainvq.inference.threads.sampler_threads'
    policy for the maps healed together). The model is put in eval mode for the call and
    restored afterwards.
    """
    k = model.config.codebook_size
    if codes.dim() != 3 or codes.dtype != torch.int64:
        raise ValueError(
            f"codes: expected a (B, h, w) int64 tensor, got {tuple(codes.shape)} {codes.dtype}"
        )
    if isinstance(n_heal, bool) or not isinstance(n_heal, int) or n_heal < 1:
        raise ValueError(f"n_heal: expected an integer >= 1, got {n_heal!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(f"threshold: expected a number (nats, +-inf allowed), got {threshold!r}")
    if math.isnan(threshold):
        raise ValueError("threshold: expected a number (nats, +-inf allowed), got nan")
    POSITIVE.check("temperature", temperature)
    SEED.check("seed", seed)
    if top_k is not None and not 1 <= top_k <= k:
        raise ValueError(f"top_k: expected None or an integer in [1, {k}], got {top_k!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {list(SAMPLERS)}, got {sampler!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    b, h, w = codes.shape
    n = b * n_heal
    device = next(model.parameters()).device
    if isinstance(level, Tensor):
        if level.shape != (b,):
            raise ValueError(
                f"level: expected an int or a ({b},) tensor, got shape {tuple(level.shape)}"
            )
        level = level.repeat_interleave(n_heal)  # (B * n_heal,)
    level_t = level_tensor(model, level, n, device)
    inputs = codes.to(device).repeat_interleave(n_heal, dim=0)  # (B * n_heal, h, w)
    if below is not None and below.dim() == 3 and len(below) == b and n_heal > 1:
        below = below.repeat_interleave(n_heal, dim=0)  # (B * n_heal, h, w)
    below = None if below is None else below.to(device)
    model.check_inputs(inputs, level_t, below)
    # exactly as sample() draws them, so that flagging every code is sample() with this seed
    uniforms = uniforms_for(uniforms, n, (h, w), seed, device)
    out = Healing(
        codes=inputs.clone(),
        resampled=torch.zeros(n, h, w, dtype=torch.bool, device=device),
        nll=torch.zeros(n, h, w, dtype=torch.float32, device=device),
    )
    # whole input maps per batch, so that the bar counts input maps
    per_batch = max(1, batch_size // n_heal) * n_heal
    run = _heal_naive if sampler == "naive" else _heal_cached
    threads = sampler_threads(min(per_batch, n), threads)
    with (
        eval_mode(model),
        torch.inference_mode(),
        intra_op_threads(threads),
        Bar(f"healing {b} code maps x {n_heal}", b, progress) as bar,
    ):
        for start in range(0, n, per_batch):
            part = slice(start, min(start + per_batch, n))
            part_level = None if level_t is None else level_t[part]
            part_below = None if below is None else below[part]
            step = _Step(inputs[part], uniforms[part], float(threshold), temperature, top_k)
            run(model, part_level, part_below, step, Healing(*(t[part] for t in out)))
            bar.advance((part.stop - part.start) // n_heal)
    return out


class _Step:
    """The decision at one position: keep the input code or draw a new one."""

    def __init__(
        self,
        inputs: Tensor,
        uniforms: Tensor,
        threshold: float,
        temperature: float,
        top_k: int | None,
    ) -> None:
        self.inputs, self.uniforms, self.threshold = inputs, uniforms, threshold
        self.temperature, self.top_k = temperature, top_k

    def __call__(self, logits: Tensor, i: int, j: int, out: Healing) -> Tensor:
        """logits: (n, K) given the healed prefix -> (n,) int64 code at (i, j), written to out."""
        current = self.inputs[:, i, j]  # (n,)
        nll = -torch.log_softmax(logits.float(), dim=1).gather(1, current[:, None])[:, 0]  # (n,)
        flag = nll > self.threshold  # (n,)
        code = current.clone()
        if flag.any():
            rows = flag.nonzero()[:, 0]
            u = self.uniforms[rows, i, j]  # (f,)
            code[rows] = draw_codes(logits[rows], u, self.temperature, self.top_k)
        out.codes[:, i, j] = code
        out.resampled[:, i, j] = flag
        out.nll[:, i, j] = nll
        return code


def _heal_naive(
    model: GatedPixelCNN, level: Tensor | None, below: Tensor | None, step: _Step, out: Healing
) -> None:
    """The reference: one full forward pass of the healed maps per position. Fills out."""
    _, h, w = out.codes.shape
    for i in range(h):
        for j in range(w):
            step(model(out.codes, level, below)[:, :, i, j], i, j, out)


def _heal_cached(
    model: GatedPixelCNN, level: Tensor | None, below: Tensor | None, step: _Step, out: Healing
) -> None:
    """Row-cached healing (the same logits as the naive reference). Fills out."""
    n, h, w = out.codes.shape
    cache = RowCache(model, n, h, w, level, below)
    for i in range(h):
        cache.start_row(i)
        for j in range(w):
            cache.set_code(j, step(cache.logits_at(j), i, j, out))
        if i + 1 < h:
            cache.finish_row(i, out.codes[:, i])
