"""The files a run (or a `predict` folder) writes so that its report can be drawn from files
alone: what the evaluation saw, a few slices of each split, and the samples to show.

Slices shown side by side are picked spread over the axial levels (and the subjects within a
level) rather than the first few, so a handful covers the whole brain and several subjects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from brainvq.atomic import atomic_path, atomic_write_json
from brainvq.data.slice_names import OASIS_NAME
from brainvq.data.sliceset import SPLITS, SliceSet
from brainvq.evaluation.reconstruction import spread_rows
from brainvq.inference.generate import (
    complete_slices,
    generate_slices,
    generate_subjects,
    spread_levels,
)
from brainvq.inference.run_models import RunModels
from brainvq.inference.sampling_options import SamplingOptions
from brainvq.run import RunLayout
from brainvq.run_config import SampleConfig

N_PER_SPLIT = 8  # dataset slices shown per split
N_COMPLETED = 3  # real slices completed by the prior
N_COMPLETIONS = 3  # completions drawn per slice
VOLUME_KEYS = ("volume_subjects", "volume_originals", "volume_recons")  # 3D: whole volumes


def _save_npz(path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def is_oasis(sliceset: SliceSet) -> bool:
    """Whether the slices carry OASIS-1 file names (their figures then cite OASIS)."""
    return len(sliceset) > 0 and all(OASIS_NAME.match(str(f)) for f in sliceset.filename[:32])


def write_data_summary(layout: RunLayout, sliceset: SliceSet, split: str) -> dict[str, Any]:
    """RUN/evaluation/data.json, and the dataset figure's slices (dataset_samples.npz).

    The summary: source, size, evaluation split, slices and subjects per split, the loader's
    notes and whether the data is OASIS."""
    per_split = {}
    shown = {}
    for name in SPLITS:
        if (sliceset.split == name).any():
            rows = sliceset.split_rows(name)  # reads the columns; only the shown images
            subjects = sliceset.subject[rows]
            per_split[name] = {"slices": len(rows), "subjects": int(len(np.unique(subjects)))}
            picked = spread_rows(subjects, sliceset.level[rows], N_PER_SPLIT)
            shown[name] = sliceset.images[rows[picked]]
    summary = {
        "source": sliceset.source,
        "size": sliceset.size,
        "n_slices": len(sliceset),
        "eval_split": split,
        "splits": per_split,
        "notes": list(sliceset.notes),
        "oasis": is_oasis(sliceset),
    }
    atomic_write_json(layout.data_summary, summary)
    _save_npz(layout.dataset_samples, **shown)
    return summary


def write_reconstructions(
    layout: RunLayout,
    sliceset: SliceSet,
    split: str,
    arrays: dict[str, np.ndarray],
    codebook: np.ndarray,
    stretch: float | None = None,
) -> None:
    """RUN/evaluation/reconstructions.npz from `evaluate_vqvae`'s arrays: per-image SSIM and
    code counts of the whole split, the slices it kept (spread over the levels) with their
    reconstructions, and the codebook (K, D). A 3D evaluation's whole volumes (volume_subjects,
    volume_originals, volume_recons) are kept too when `stretch`, the frame's level spacing in
    pixels, is given (for the report's three-plane figure at true spacing)."""
    volumes = {}
    if stretch is not None and "volume_originals" in arrays:
        volumes = {key: arrays[key] for key in VOLUME_KEYS}
        volumes["volume_stretch"] = np.float64(stretch)
    _save_npz(
        layout.reconstructions,
        split=np.str_(split),
        codebook=np.asarray(codebook, dtype=np.float32),
        ssim=arrays["ssim"].astype(np.float32),
        counts=arrays["counts"].astype(np.int64),
        originals=arrays["originals"],
        recons=arrays["recons"],
        shown_ssim=arrays["ssim"][arrays["shown"]].astype(np.float32),
        **volumes,
    )


def _drawn_slices(
    models: RunModels, n: int, levels: np.ndarray | None, options: SamplingOptions
) -> np.ndarray:
    """n drawn slices (n, H, W) uint8 at `levels` (n,) (None: a prior without levels). A 2D
    run draws them one by one; a 3D run draws whole subjects, as few as give each level its
    slices (the most any level is asked for), and takes slice i from subject j when it is the
    j-th asked for at its level (a 3D run's prior always knows levels: its volumes need them)."""
    if models.dims == 2:
        return generate_slices(models, n, levels, options=options)[1]
    _, volumes, subject_levels = generate_subjects(
        models, int(np.bincount(levels).max()), options=options
    )  # (S, L, H, W)
    at = np.searchsorted(subject_levels, levels)  # each level's slice in a subject
    nth = np.array([int((levels[:i] == levels[i]).sum()) for i in range(n)], dtype=np.int64)
    return volumes[nth, at]  # (n, H, W)


def write_figure_samples(
    layout: RunLayout, models: RunModels, config: SampleConfig, part: SliceSet
) -> None:
    """RUN/samples/figures.npz: the slices the report shows from the prior, drawn in one batch.

    grid (config.n samples, levels spread over the range for a conditional prior); rows
    (config.per_level samples at each of config.n_levels_shown evenly spaced levels); and
    completions of N_COMPLETED real slices of `part` with their top config.keep_rows latent
    rows kept (none when a conditional prior knows none of the slices' levels)."""
    h = models.latent_hw[0]
    if not 0 <= config.keep_rows < h:
        raise ValueError(
            f"sample.keep_rows={config.keep_rows}: expected latent rows to keep in [0, {h - 1}] "
            f"(the code maps have {h} rows)"
        )
    grid_levels = spread_levels(config.n, models.n_levels)  # (n,) or None
    row_levels = np.zeros(0, dtype=np.int64)
    levels = grid_levels
    if grid_levels is not None:
        row_levels = np.unique(spread_levels(config.n_levels_shown, models.n_levels))
        levels = np.concatenate([grid_levels, np.repeat(row_levels, config.per_level)])
    count = config.n + len(row_levels) * config.per_level
    options = SamplingOptions(temperature=config.temperature, top_k=config.top_k, seed=config.seed)
    images = _drawn_slices(models, count, levels, options)
    out: dict[str, np.ndarray] = {
        "grid": images[: config.n],
        "grid_levels": np.full(config.n, -1) if grid_levels is None else grid_levels,
        "rows": images[config.n :].reshape(len(row_levels), config.per_level, *images.shape[1:]),
        "row_levels": row_levels,
        "temperature": np.float64(config.temperature),
        "top_k": np.int64(config.top_k or 0),
        "seed": np.int64(config.seed),
        "keep_rows": np.int64(config.keep_rows),
        "downsample": np.int64(models.vqvae.config.downsample),
        "latent_rows": np.int64(h),
    }
    rows = np.arange(len(part))  # the slices a completion may start from (columns only)
    if models.n_levels:
        rows = np.flatnonzero((part.level >= 0) & (part.level < models.n_levels))
    if len(rows) and models.dims == 2:  # a 3D run completes no single slice
        picked = part.subset(rows[spread_rows(part.subject[rows], part.level[rows], N_COMPLETED)])
        levels = picked.level.astype(np.int64) if models.n_levels else None
        _, done = complete_slices(
            models, picked.images, levels, config.keep_rows, N_COMPLETIONS, options=options
        )
        out.update(completion_originals=picked.images, completions=done)
    _save_npz(layout.figure_samples, **out)
