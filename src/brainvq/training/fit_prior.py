"""Train the PixelCNN prior stage of a run on the code maps of its VQ-VAE."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from brainvq.data.dataset import CodeMapDataset
from brainvq.data.sliceset import SliceSet
from brainvq.inference.codes import CodeSet, code_counts, encode_splits
from brainvq.inference.slice_below import code_below_rows
from brainvq.io.bundle import load_vqvae
from brainvq.run import RunLayout
from brainvq.run_config import RunConfig
from brainvq.training.prior_module import PriorModule
from brainvq.training.trainer import (
    check_batch_memory,
    finish_bundle,
    fit_stage,
    steps_per_epoch,
)


def _loader(
    codes: CodeSet,
    batch_size: int,
    shuffle: bool,
    seed: int,
    workers: int = 0,
    neighbour: bool = False,
) -> DataLoader:
    """Batches of (codes (B, h, w) int64, level (B,) int64[, the slices below (B, h, w) int64
    when `neighbour`]), read from the split's code maps as they are needed."""
    generator = torch.Generator().manual_seed(seed)
    below = code_below_rows(codes) if neighbour else None
    return DataLoader(
        CodeMapDataset(codes.codes, codes.level, below),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def prior_levels(sliceset: SliceSet, level_stride: int = 1) -> int:
    """Number of conditioning levels: the source's, or 0 (unconditional) when any is unknown.
    A 3D VQ-VAE's codes have a latent level every `level_stride` slices (its level_downsample),
    so its prior has ceil(n_levels / level_stride) of them."""
    if sliceset.n_levels > 0 and (sliceset.level >= 0).all():
        return -(-int(sliceset.n_levels) // level_stride)
    return 0


def fit_prior(
    run_dir: Path,
    config: RunConfig,
    sliceset: SliceSet,
    resume: bool = False,
    callbacks: Sequence[L.Callback] = (),
    progress_bar: bool = True,
) -> Path:
    """Encode every split with RUN/vqvae/VQVAE_Model (cached in RUN/codes/), train the prior,
    and write RUN/prior/PixelCNN_Model/ (best by validation NLL). Returns the bundle folder.
    `callbacks` join the trainer's own (e.g. a tuning trial's pruning callback)."""
    check_batch_memory(config, "prior")
    layout = RunLayout(run_dir)
    cfg = config.prior_train
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    vqvae = load_vqvae(layout.bundle("vqvae"))
    codes = encode_splits(vqvae, sliceset, layout.codes)
    if "train" not in codes or "validate" not in codes:
        raise ValueError(
            f"the source {sliceset.source} needs a train and a validate split to train the prior"
        )
    model_config = dataclasses.replace(
        config.prior,
        codebook_size=vqvae.config.codebook_size,
        n_levels=prior_levels(sliceset, vqvae.config.level_stride),
        map_size=int(codes["train"].codes.shape[1]),
    )
    neighbour = model_config.has_neighbour
    world = cfg.devices * cfg.num_nodes
    n_train = len(codes["train"].codes)
    steps = steps_per_epoch(n_train, cfg.batch_size, world, cfg.limit_train_batches)
    module = PriorModule(model_config, cfg, total_steps=cfg.epochs * steps)
    counts = code_counts(codes["train"].codes, model_config.codebook_size)
    module.model.init_output_bias(torch.from_numpy(counts))  # a resume loads its own weights
    trainer, history = fit_stage(
        "prior",
        module,
        cfg,
        layout,
        callbacks=callbacks,
        progress_bar=progress_bar,
        resume=resume,
        train_dataloaders=_loader(
            codes["train"], cfg.batch_size, True, cfg.seed, config.data.num_workers, neighbour
        ),
        val_dataloaders=_loader(
            codes["validate"], cfg.batch_size, False, cfg.seed, config.data.num_workers, neighbour
        ),
    )
    meta = {
        "vqvae_bundle": str(vqvae.path),
        "latent_shape": list(codes["train"].codes.shape[1:]),
    }
    return finish_bundle("prior", trainer, history, module, cfg, layout, meta)
