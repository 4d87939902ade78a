"""Generating and completing brain slices: sample code maps with the prior, decode them with the
VQ-VAE, and one way of spreading levels over a batch.

Any number of maps is drawn in chunks whose working memory (the sampler's row cache, the
uniforms, the decoded images) stays under CHUNK_BYTES (`chunk_size`): `iter_slices` yields them
as they are made, so a caller that writes them holds one chunk; `generate_slices`,
`generate_subjects` and `complete_slices` fill their (returned) arrays a chunk at a time. One
seeded generator draws every chunk's uniforms in turn, which is the stream one draw of all maps
takes (torch's CPU generator fills a tensor in order), so the maps are those of one draw. How
codes are drawn (temperature, top-k, seed, sampler) comes as one SamplingOptions
(brainvq.inference.sampling_options), handed on to the samplers as it came.

A 3D run's subjects are drawn the same way, latent level by latent level (its prior's levels,
brainvq.inference.run_models), and each subject's code volume is decoded whole by the 3D
VQ-VAE; the levels and images returned are the volume's slices (`level_downsample` a latent
level). Single slices (`generate_slices`, completions) are 2D only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from brainvq.inference.codes import BATCH, decode_codes, encode_images
from brainvq.inference.run_models import RunModels
from brainvq.inference.sampling import sample
from brainvq.inference.sampling_options import DEFAULT_OPTIONS, SamplingOptions
from brainvq.inference.subjects import check_subject_prior, sample_subjects, subject_levels
from brainvq.inference.threads import sampler_threads
from brainvq.values import COUNT, check_memory

CHUNK_BYTES = 256 * 2**20  # the working memory of one chunk of draws


def spread_levels(
    n: int, n_levels: int, start: int = 0, stop: int | None = None
) -> np.ndarray | None:
    """n levels spread evenly over [0, n_levels): level i is the centre of the i-th of n equal
    parts, so every level appears equally often when n is a multiple of n_levels, and the first
    and last parts are as far from the ends. Those of i in [start, stop) (default all n); None
    for an unconditional prior (n_levels 0)."""
    if n_levels <= 0:
        return None
    i = np.arange(start, n if stop is None else stop, dtype=np.int64)
    return ((2 * i + 1) * n_levels // (2 * n)).astype(np.int64)


def draw_bytes(models: RunModels, n_slices: int = 1) -> int:
    """The working memory of one map (or one subject of n_slices maps) while it is drawn and
    decoded: the row cache (every layer's stacks over the padded map, float32, vertical and
    horizontal), its uniforms and codes (float64 and int64 a position) and its decoded image
    (float32 and uint8)."""
    cfg, size = models.prior.config, models.vqvae.config.image_size
    h, w = models.latent_hw
    pad = max(cfg.first_kernel, cfg.kernel_size)
    cache = 2 * (cfg.embed_dim + cfg.channels * cfg.n_layers) * (h + pad) * (w + 2 * pad) * 4
    return (cache + 16 * h * w + 5 * size * size) * n_slices


def chunk_size(models: RunModels, n_slices: int = 1) -> int:
    """Maps (or subjects) drawn at once: as many as CHUNK_BYTES holds (`draw_bytes`), rounded
    so that a chunk's maps decode in whole batches of inference.codes.BATCH where it can."""
    most = max(1, CHUNK_BYTES // draw_bytes(models, n_slices))
    step = BATCH // math.gcd(BATCH, n_slices)  # subjects whose maps make whole batches
    return most - most % step if most > step else most


def result_bytes(models: RunModels, n_slices: int = 1) -> int:
    """What one returned map (or subject) takes: its codes (int64) and its image (uint8)."""
    h, w = models.latent_hw
    return (8 * h * w + models.vqvae.config.image_size**2) * n_slices


def check_level(models: RunModels, level: int | None, flag: str = "--level") -> int | None:
    """The conditioning level to use: required and in range for a conditional prior."""
    if models.n_levels == 0:
        if level is not None:
            raise ValueError(
                f"{flag} {level}: this run's prior is unconditional (its data had no levels)"
            )
        return None
    if level is None:
        raise ValueError(
            f"this run's prior is conditional: give {flag} K with K in [0, {models.n_levels - 1}]"
        )
    if not 0 <= level < models.n_levels:
        raise ValueError(f"{flag} {level}: expected a level in [0, {models.n_levels - 1}]")
    return level


def iter_slices(
    models: RunModels,
    n: int,
    level_at: Callable[[int, int], np.ndarray] | None,
    *,
    options: SamplingOptions = DEFAULT_OPTIONS,
    progress: bool = True,
    threads: int | None = None,
    chunk: int | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Sample n code maps a chunk at a time (chunk maps, default `chunk_size`) and decode them:
    yields (start, codes (b, h, w) int64, images (b, H, W) uint8) for maps start .. start + b -
    1, the maps one draw of n gives. level_at(start, stop): the levels (b,) int64 of those
    maps; None for an unconditional prior."""
    COUNT.check("n", n)
    h, w = models.latent_hw
    chunk = chunk or chunk_size(models)
    generator = torch.Generator().manual_seed(options.seed)
    threads = sampler_threads(n, threads)  # the policy of one draw of n maps
    for start in range(0, n, chunk):
        b = min(chunk, n - start)
        uniforms = torch.rand(b, h, w, generator=generator, dtype=torch.float64)
        levels = None if level_at is None else level_at(start, start + b)
        codes = sample(
            models.slice_prior.model,  # a slice on its own: the slice prior
            b,
            models.latent_hw,
            level=None if levels is None else torch.from_numpy(np.asarray(levels, np.int64)),
            uniforms=uniforms,
            progress=progress,
            threads=threads,
            **options.as_keywords(),
        )  # (b, h, w)
        yield start, codes.cpu().numpy(), decode_codes(models.vqvae.model, codes)


def generate_slices(
    models: RunModels,
    n: int,
    levels: np.ndarray | None,
    *,
    options: SamplingOptions = DEFAULT_OPTIONS,
    progress: bool = True,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample n code maps (at `levels` (n,) int64, or None for an unconditional prior) and
    decode them, a chunk at a time (`iter_slices`). Returns (codes (n, h, w) int64, images
    (n, H, W) uint8)."""
    COUNT.check("n", n)
    check_memory("n", n, result_bytes(models), "one slice's code map and image")
    size = models.vqvae.config.image_size
    codes = np.empty((n, *models.latent_hw), dtype=np.int64)
    images = np.empty((n, size, size), dtype=np.uint8)
    level_at = None if levels is None else lambda a, b: np.asarray(levels)[a:b]
    draws = iter_slices(models, n, level_at, options=options, progress=progress, threads=threads)
    for start, c, im in draws:
        codes[start : start + len(c)], images[start : start + len(c)] = c, im
    return codes, images


def iter_subjects(
    models: RunModels,
    n: int,
    *,
    first_level: int = 0,
    n_slices: int | None = None,
    options: SamplingOptions = DEFAULT_OPTIONS,
    progress: bool = True,
    threads: int | None = None,
    chunk: int | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """`generate_subjects` a chunk of subjects at a time (chunk subjects, default
    `chunk_size`): yields (start, codes (b, L, h, w) int64, images (b, L, H, W) uint8, levels
    (L,) int64) for subjects start .. start + b - 1, those one draw of n gives. A 3D run:
    codes (b, L', h, w) of L' latent levels, images (b, L, H, W) and levels (L,) of the
    L = L' x level_downsample slices (first_level and n_slices in slices, multiples of it)."""
    prior = models.prior.model
    check_subject_prior(prior)
    COUNT.check("n", n)
    slice_levels = subject_slice_levels(models, first_level, n_slices)  # (L,)
    first_level, n_slices = _latent(models, first_level, n_slices)
    (h, w), size = models.latent_hw, models.vqvae.config.image_size
    depth = len(slice_levels) // models.level_stride  # the prior's levels a subject
    chunk = chunk or chunk_size(models, depth)
    generator = torch.Generator().manual_seed(options.seed)  # one draw's uniforms, chunk by chunk
    for start in range(0, n, chunk):
        b = min(chunk, n - start)
        codes = sample_subjects(
            prior,
            b,
            models.latent_hw,
            n_slices=depth,
            first_level=first_level,
            progress=progress,
            threads=threads,
            uniforms=torch.rand(b, depth, h, w, generator=generator, dtype=torch.float64),
            **options.as_keywords(),
        )  # (b, L, h, w)
        if models.dims == 3:
            images = decode_codes(models.vqvae.model, codes)  # (b, L, H, W)
        else:
            images = decode_codes(models.vqvae.model, codes.reshape(-1, h, w))  # (b * L, H, W)
        images = images.reshape(b, len(slice_levels), size, size)  # (b, L, H, W)
        yield start, codes.cpu().numpy(), images, slice_levels


def subject_slice_levels(
    models: RunModels, first_level: int = 0, n_slices: int | None = None
) -> np.ndarray:
    """(L,) int64 levels of a drawn subject's slices, bottom to top (-1: a prior without
    levels; brainvq.inference.subjects.subject_levels). A 3D run: the level_downsample slices
    of each latent level, first_level and n_slices in slices (multiples of it)."""
    latent_first, latent_n = _latent(models, first_level, n_slices)
    levels = np.asarray(subject_levels(models.prior.model, latent_n, latent_first), np.int64)
    stride = models.level_stride
    out = levels[:, None] * stride + np.arange(stride)[None, :]  # (L', stride)
    return np.where(levels[:, None] < 0, -1, out).ravel()  # (L,)


def _latent(models: RunModels, first_level: int, n_slices: int | None) -> tuple[int, int | None]:
    """first_level and n_slices in the prior's levels: themselves for a 2D run, divided by the
    level stride for a 3D one (ValueError naming the argument when it does not divide them)."""
    stride = models.level_stride
    if stride == 1:
        return first_level, n_slices
    for name, value in (("first_level", first_level), ("n_slices", n_slices)):
        if isinstance(value, int) and value % stride:
            raise ValueError(
                f"{name}: a 3D run draws {stride} slices a latent level; expected a multiple "
                f"of {stride}, got {value}"
            )
    return first_level // stride, None if n_slices is None else n_slices // stride


def generate_subjects(
    models: RunModels,
    n: int,
    *,
    first_level: int = 0,
    n_slices: int | None = None,
    options: SamplingOptions = DEFAULT_OPTIONS,
    progress: bool = True,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n subjects drawn slice by slice, bottom to top (brainvq.inference.subjects), decoded,
    a chunk of subjects at a time (`iter_subjects`).

    Returns (codes (n, L, h, w) int64, images (n, L, H, W) uint8, levels (L,) int64: slice l's
    level, -1 for a prior without levels). ValueError for a prior without the neighbour. A 3D
    run: codes (n, L', h, w) of its latent levels (`iter_subjects`)."""
    check_subject_prior(models.prior.model)
    COUNT.check("n", n)
    levels = subject_slice_levels(models, first_level, n_slices)  # (L,)
    depth = len(levels)
    what = f"one subject's {depth} code maps and images"
    check_memory("n", n, result_bytes(models, depth), what)
    size = models.vqvae.config.image_size
    codes = np.empty((n, depth // models.level_stride, *models.latent_hw), dtype=np.int64)
    images = np.empty((n, depth, size, size), dtype=np.uint8)
    draws = iter_subjects(
        models,
        n,
        first_level=first_level,
        n_slices=n_slices,
        options=options,
        progress=progress,
        threads=threads,
    )
    for start, c, im, _ in draws:
        codes[start : start + len(c)], images[start : start + len(c)] = c, im
    return codes, images, levels


def iter_completions(
    models: RunModels,
    images: np.ndarray,
    levels: np.ndarray | None,
    keep_rows: int,
    n: int,
    *,
    options: SamplingOptions = DEFAULT_OPTIONS,
    progress: bool = True,
    threads: int | None = None,
    chunk: int | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """`complete_slices` a chunk at a time (chunk maps, default `chunk_size`): yields (start,
    codes (c, h, w) int64, images (c, H, W) uint8) for rows start .. start + c - 1 of the
    B * n completions, completion r of slice i being row i * n + r."""
    h, w = models.latent_hw
    if not 0 <= keep_rows <= h:
        raise ValueError(f"keep_rows: expected latent rows to keep in [0, {h}], got {keep_rows}")
    COUNT.check("n", n)
    kept = torch.from_numpy(encode_images(models.vqvae.model, images).astype(np.int64))
    level_all = None if levels is None else torch.from_numpy(np.asarray(levels, np.int64))
    total, chunk = len(images) * n, chunk or chunk_size(models)
    generator = torch.Generator().manual_seed(options.seed)  # one draw's uniforms, chunk by chunk
    threads = sampler_threads(total, threads)
    for start in range(0, total, chunk):
        rows = torch.arange(start, min(start + chunk, total)) // n  # (c,) the slice of each
        done = sample(
            models.prior.model,
            len(rows),
            (h, w),
            level=None if level_all is None else level_all[rows],
            init_codes=kept[rows],
            keep_rows=keep_rows,
            uniforms=torch.rand(len(rows), h, w, generator=generator, dtype=torch.float64),
            progress=progress,
            threads=threads,
            **options.as_keywords(),
        )  # (c, h, w)
        yield start, done.cpu().numpy(), decode_codes(models.vqvae.model, done)


def complete_slices(
    models: RunModels,
    images: np.ndarray,
    levels: np.ndarray | None,
    keep_rows: int,
    n: int,
    *,
    options: SamplingOptions = DEFAULT_OPTIONS,
    progress: bool = True,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the top `keep_rows` latent rows of each slice's code map, sample the rest n times.

    images: (B, H, W) uint8 real slices; levels: (B,) int64 or None. Returns (the completed
    code maps (B, n, h, w) int64, whose first keep_rows rows are the slices' own codes, and
    their images (B, n, H, W) uint8), drawn a chunk at a time (`iter_completions`)."""
    COUNT.check("n", n)
    what = f"one completion of each of the {len(images)} slices: code maps and images"
    check_memory("n", n, len(images) * result_bytes(models), what)
    (h, w), size, b = models.latent_hw, models.vqvae.config.image_size, len(images)
    codes = np.empty((b * n, h, w), dtype=np.int64)
    decoded = np.empty((b * n, size, size), dtype=np.uint8)
    draws = iter_completions(
        models, images, levels, keep_rows, n, options=options, progress=progress, threads=threads
    )
    for start, c, im in draws:
        codes[start : start + len(c)], decoded[start : start + len(c)] = c, im
    return codes.reshape(b, n, h, w), decoded.reshape(b, n, size, size)
