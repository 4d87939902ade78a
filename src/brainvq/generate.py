"""Generating and completing brain slices with a run's prior and VQ-VAE, written as PNGs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from brainvq.bundle import Bundle, load_prior, load_vqvae
from brainvq.codes import decode_codes, encode_images
from brainvq.data.imaging import prepare_slice
from brainvq.report.grid import image_grid, save_png
from brainvq.sampling import complete, sample

LEVEL_IN_NAME = re.compile(r"_slice_(\d+)")


@dataclass(frozen=True)
class RunModels:
    vqvae: Bundle
    prior: Bundle

    @property
    def latent_hw(self) -> tuple[int, int]:
        side = self.vqvae.config.image_size // self.vqvae.config.downsample
        return (side, side)

    @property
    def n_levels(self) -> int:
        return int(self.prior.config.n_levels)


def load_run_models(run_dir: Path) -> RunModels:
    return RunModels(
        vqvae=load_vqvae(Path(run_dir) / "vqvae"), prior=load_prior(Path(run_dir) / "prior")
    )


def check_level(models: RunModels, level: int | None) -> int | None:
    """The conditioning level to use: required and in range for a conditional prior."""
    if models.n_levels == 0:
        if level is not None:
            raise ValueError(
                f"--slice {level}: this run's prior is unconditional (its data had no slice levels)"
            )
        return None
    if level is None:
        raise ValueError(
            f"this run's prior is conditional: give --slice K with K in [0, {models.n_levels - 1}]"
        )
    if not 0 <= level < models.n_levels:
        raise ValueError(f"--slice {level}: expected a level in [0, {models.n_levels - 1}]")
    return level


def sample_to_folder(
    run_dir: Path,
    out_dir: Path,
    n: int = 16,
    level: int | None = None,
    all_levels: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    sampler: str = "cached",
) -> list[Path]:
    """Sample slices and write `sample_XXX.png` (8-bit), `grid.png`, and with `all_levels`
    `levels.png` (one row of n samples per axial level). Returns the files written."""
    models = load_run_models(run_dir)
    out_dir = Path(out_dir)
    if all_levels:
        if models.n_levels == 0:
            raise ValueError(
                "--slices all needs a conditional prior; this run's prior is unconditional"
            )
        levels = np.repeat(np.arange(models.n_levels), n)  # (L * n,)
    else:
        lvl = check_level(models, level)
        levels = None if lvl is None else np.full(n, lvl)
    cond = None if levels is None else torch.from_numpy(levels)
    count = len(levels) if levels is not None else n
    codes = sample(
        models.prior.model,
        count,
        models.latent_hw,
        cond=cond,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        sampler=sampler,
        progress=True,
    )
    images = decode_codes(models.vqvae.model, codes)  # (count, H, W) uint8
    written = [save_png(out_dir / f"sample_{i:03d}.png", img) for i, img in enumerate(images)]
    written.append(save_png(out_dir / "grid.png", image_grid(images, ncols=min(8, count))))
    if all_levels:
        written.append(save_png(out_dir / "levels.png", image_grid(images, ncols=n)))
    return written


def level_from_name(path: Path) -> int | None:
    match = LEVEL_IN_NAME.search(path.name)
    return int(match.group(1)) if match else None


def complete_to_folder(
    run_dir: Path,
    input_png: Path,
    out_dir: Path,
    keep_rows: int,
    n: int = 4,
    level: int | None = None,
    temperature: float = 1.0,
    seed: int = 0,
) -> list[Path]:
    """Keep the first `keep_rows` latent rows of a real slice's code map and sample the rest.

    Writes `completion_X.png` per completion and `grid.png` (original, its reconstruction,
    then the completions, with the kept part marked by a line)."""
    models = load_run_models(run_dir)
    input_png = Path(input_png)
    if not input_png.is_file():
        raise FileNotFoundError(f"--input {input_png}: no such image file")
    size = models.vqvae.config.image_size
    image = prepare_slice(input_png.read_bytes(), str(input_png), size)[0]  # (H, W) uint8
    if models.n_levels and level is None:
        level = level_from_name(input_png)
    lvl = check_level(models, level)
    codes = torch.from_numpy(
        encode_images(models.vqvae.model, image[None]).astype(np.int64)
    )  # (1, h, w)
    done = complete(
        models.prior.model,
        codes,
        keep_rows,
        n,
        cond=lvl,
        temperature=temperature,
        seed=seed,
        progress=True,
    )
    images = decode_codes(models.vqvae.model, done)  # (n, H, W)
    recon = decode_codes(models.vqvae.model, codes)
    out_dir = Path(out_dir)
    written = [save_png(out_dir / f"completion_{i}.png", img) for i, img in enumerate(images)]
    row = np.concatenate([image[None], recon, images]).copy()
    line = keep_rows * models.vqvae.config.downsample
    if 0 < line < size:
        row[2:, line, :] = 255  # mark where the sampled part starts on each completion
    written.append(save_png(out_dir / "grid.png", image_grid(row, ncols=len(row))))
    return written
