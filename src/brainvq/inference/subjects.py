"""Whole subjects: code maps drawn slice by slice, bottom to top, each given the slice below.

A prior with the neighbour (`prior: {neighbour: previous}`, brainvq.models.neighbour_map) draws
slice l of a subject at level first_level + l given the code map of slice l - 1; the lowest
slice has no slice below. Every draw uses one uniform per (subject, slice, position), drawn up
front from a seeded CPU torch.Generator as (n, L, h, w) float64, so the samplers below give the
same subjects for the same seed and their test is one of equality:

- "naive": brainvq.inference.sampling's naive sampler, slice after slice (the reference);
- "cached": its cached sampler, slice after slice;
- "wavefront" (the default): all slices of a subject at once, slice l a few rows behind
  slice l - 1 (brainvq.inference.wavefront): the features of the slice below at row i read
  its rows up to i + neighbour_layers only, so they are final as soon as those rows are drawn.
"""

from __future__ import annotations

import torch
from torch import Tensor

from brainvq.inference.sampling import draw_uniforms, level_tensor, sample
from brainvq.inference.threads import intra_op_threads, sampler_threads
from brainvq.inference.wavefront import sample_wavefront
from brainvq.models.eval_mode import eval_mode
from brainvq.models.pixelcnn import GatedPixelCNN
from brainvq.progress import Bar
from brainvq.values import COUNT, POSITIVE, SEED

SUBJECT_SAMPLERS = ("naive", "cached", "wavefront")
SUBJECT_SAMPLER = "wavefront"  # the default: every slice of a subject at once


def check_subject_prior(model: GatedPixelCNN) -> None:
    """ValueError unless the prior conditions on the slice below: a prior without it would give
    independent slices, which are no subject."""
    if not model.config.has_neighbour:
        raise ValueError(
            "this prior does not condition on the slice below (prior.neighbour: none), so its "
            "slices would be independent draws, not a subject; train a prior with "
            "`prior: {neighbour: previous}` in the run config (or sample slices with --n)"
        )


def subject_levels(model: GatedPixelCNN, n_slices: int | None, first_level: int) -> list[int]:
    """The levels of a subject's slices, bottom to top: first_level, first_level + 1, ...;
    n_slices defaults to the levels from first_level to the prior's last (a prior without
    levels needs it). ValueError naming the argument when they do not fit the prior."""
    n_levels = model.config.n_levels
    if n_levels == 0:
        if n_slices is None:
            raise ValueError("n_slices: this prior has no levels; give the number of slices")
        COUNT.check("n_slices", n_slices)
        return [-1] * n_slices
    if isinstance(first_level, bool) or not isinstance(first_level, int):
        raise ValueError(f"first_level: expected an integer, got {first_level!r}")
    if not 0 <= first_level < n_levels:
        raise ValueError(f"first_level: expected a level in [0, {n_levels}), got {first_level}")
    if n_slices is None:
        n_slices = n_levels - first_level
    COUNT.check("n_slices", n_slices)
    if first_level + n_slices > n_levels:
        raise ValueError(
            f"n_slices: {n_slices} slices from level {first_level} go past the prior's last "
            f"level {n_levels - 1}"
        )
    return list(range(first_level, first_level + n_slices))


def sample_subjects(
    model: GatedPixelCNN,
    n: int,
    shape: tuple[int, int],
    *,
    n_slices: int | None = None,
    first_level: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    sampler: str = SUBJECT_SAMPLER,
    progress: bool = False,
    threads: int | None = None,
    uniforms: Tensor | None = None,
) -> Tensor:
    """Draw n subjects of n_slices code maps of size shape = (h, w), bottom to top.

    Slice l is at level first_level + l (a prior with levels) and is drawn given slice l - 1
    (slice 0: no slice below). temperature and top_k as brainvq.inference.sampling.sample.
    uniforms: (n, L, h, w) float64 in [0, 1), one per draw, instead of those `seed` draws (a
    caller drawing many subjects a chunk at a time from one generator).
    Returns (n, L, h, w) int64 in [0, K) on the model's device; slice l of subject s is
    [s, l]. The same seed gives the same subjects with every sampler.
    """
    check_subject_prior(model)
    COUNT.check("n", n)
    POSITIVE.check("temperature", temperature)
    SEED.check("seed", seed)
    if sampler not in SUBJECT_SAMPLERS:
        raise ValueError(f"sampler: expected one of {list(SUBJECT_SAMPLERS)}, got {sampler!r}")
    levels = subject_levels(model, n_slices, first_level)
    h, w = shape
    if uniforms is None:
        uniforms = draw_uniforms(n, (len(levels), h, w), seed)  # (n, L, h, w)
    elif uniforms.shape != (n, len(levels), h, w) or uniforms.dtype != torch.float64:
        raise ValueError(
            f"uniforms: expected an ({n}, {len(levels)}, {h}, {w}) float64 tensor, "
            f"got {tuple(uniforms.shape)} {uniforms.dtype}"
        )
    device = next(model.parameters()).device
    if sampler == "wavefront":
        level_t = None
        if model.config.n_levels:
            level_t = torch.tensor(levels, dtype=torch.int64, device=device)  # (L,)
        drawing = n * min(len(levels), -(-h // (model.neighbour.reach + 1)))  # maps per step
        with eval_mode(model), torch.inference_mode():
            with intra_op_threads(sampler_threads(drawing, threads)):
                return sample_wavefront(
                    model, n, (h, w), level_t, uniforms, temperature, top_k, progress
                )
    out = torch.zeros(n, len(levels), h, w, dtype=torch.int64, device=device)
    below = None
    with Bar(f"sampling {n} subjects ({sampler}), slices", len(levels), progress) as bar:
        for i, level in enumerate(levels):
            out[:, i] = sample(
                model,
                n,
                (h, w),
                level=None if level < 0 else level_tensor(model, level, n, device),
                temperature=temperature,
                top_k=top_k,
                sampler=sampler,
                below=below,
                uniforms=uniforms[:, i].contiguous(),
                threads=threads,
            )
            below = out[:, i]
            bar.advance()
    return out
