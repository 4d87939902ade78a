"""Generating and completing brain slices: sample code maps with the prior, decode them with the
VQ-VAE. One way of spreading levels over a batch, one way of reading a level from a file name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from brainvq.inference.codes import decode_codes, encode_images
from brainvq.inference.sampling import complete, sample
from brainvq.inference.subjects import check_subject_prior, sample_subjects, subject_levels
from brainvq.io.bundle import Bundle, load_prior, load_vqvae
from brainvq.run import RunLayout

LEVEL_IN_NAME = re.compile(r"_slice_(\d+)")


@dataclass(frozen=True)
class RunModels:
    """A run's two models: the VQ-VAE and the prior over its codes."""

    vqvae: Bundle
    prior: Bundle

    def __post_init__(self) -> None:
        k_prior, k_vqvae = self.prior.config.codebook_size, self.vqvae.config.codebook_size
        if k_prior != k_vqvae:
            raise ValueError(
                f"the prior at {self.prior.path} models {k_prior} codes but the VQ-VAE at "
                f"{self.vqvae.path} has {k_vqvae}; retrain the prior on this VQ-VAE's codes"
            )

    @property
    def latent_hw(self) -> tuple[int, int]:
        side = self.vqvae.config.latent_size
        return (side, side)

    @property
    def n_levels(self) -> int:
        return int(self.prior.config.n_levels)

    @property
    def slice_prior(self) -> Bundle:
        """The prior that judges and draws one slice on its own (anomaly maps, healing, code
        NLL, their calibration, single-slice samples)."""
        return self.prior


def load_run_models(run_dir: str | Path) -> RunModels:
    """RUN/vqvae/VQVAE_Model and RUN/prior/PixelCNN_Model."""
    layout = RunLayout(run_dir)
    return RunModels(
        vqvae=load_vqvae(layout.bundle("vqvae")), prior=load_prior(layout.bundle("prior"))
    )


def spread_levels(n: int, n_levels: int) -> np.ndarray | None:
    """n levels spread evenly over [0, n_levels): level i is the centre of the i-th of n equal
    parts, so every level appears equally often when n is a multiple of n_levels, and the first
    and last parts are as far from the ends. None for an unconditional prior (n_levels 0)."""
    if n_levels <= 0:
        return None
    return ((2 * np.arange(n) + 1) * n_levels // (2 * n)).astype(np.int64)


def level_from_name(name: str | Path) -> int | None:
    """The level k of an OASIS-style name `..._slice_<k>...`, or None."""
    match = LEVEL_IN_NAME.search(Path(str(name)).name)
    return int(match.group(1)) if match else None


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


def generate_slices(
    models: RunModels,
    n: int,
    levels: np.ndarray | None,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    sampler: str = "cached",
    progress: bool = True,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample n code maps (at `levels` (n,) int64, or None for an unconditional prior) and
    decode them. Returns (codes (n, h, w) int64, images (n, H, W) uint8)."""
    codes = sample(
        models.prior.model,
        n,
        models.latent_hw,
        level=None if levels is None else torch.from_numpy(np.asarray(levels, dtype=np.int64)),
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        sampler=sampler,
        progress=progress,
        threads=threads,
    )  # (n, h, w)
    return codes.cpu().numpy(), decode_codes(models.vqvae.model, codes)


def generate_subjects(
    models: RunModels,
    n: int,
    *,
    first_level: int = 0,
    n_slices: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    sampler: str = "wavefront",
    progress: bool = True,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n subjects drawn slice by slice, bottom to top (brainvq.inference.subjects), decoded.

    Returns (codes (n, L, h, w) int64, images (n, L, H, W) uint8, levels (L,) int64: slice l's
    level, -1 for a prior without levels). ValueError for a prior without the neighbour."""
    prior = models.prior.model
    check_subject_prior(prior)
    levels = np.asarray(subject_levels(prior, n_slices, first_level), dtype=np.int64)
    codes = sample_subjects(
        prior,
        n,
        models.latent_hw,
        n_slices=len(levels),
        first_level=first_level,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        sampler=sampler,
        progress=progress,
        threads=threads,
    )  # (n, L, h, w)
    flat = codes.reshape(-1, *codes.shape[2:])  # (n * L, h, w)
    images = decode_codes(models.vqvae.model, flat)  # (n * L, H, W)
    return codes.cpu().numpy(), images.reshape(n, len(levels), *images.shape[1:]), levels


def complete_slices(
    models: RunModels,
    images: np.ndarray,
    levels: np.ndarray | None,
    keep_rows: int,
    n: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the top `keep_rows` latent rows of each slice's code map, sample the rest n times.

    images: (B, H, W) uint8 real slices; levels: (B,) int64 or None. Returns (the completed
    code maps (B, n, h, w) int64, whose first keep_rows rows are the slices' own codes, and
    their images (B, n, H, W) uint8)."""
    h = models.latent_hw[0]
    if not 0 <= keep_rows <= h:
        raise ValueError(f"keep_rows: expected latent rows to keep in [0, {h}], got {keep_rows}")
    codes = torch.from_numpy(encode_images(models.vqvae.model, images).astype(np.int64))
    done = complete(
        models.prior.model,
        codes,
        keep_rows,
        n,
        level=None if levels is None else torch.from_numpy(np.asarray(levels, dtype=np.int64)),
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        progress=progress,
        threads=threads,
    )  # (B * n, h, w)
    decoded = decode_codes(models.vqvae.model, done)  # (B * n, H, W)
    b = len(images)
    return done.cpu().numpy().reshape(b, n, *done.shape[1:]), decoded.reshape(
        b, n, *decoded.shape[1:]
    )
