"""Train the VQ-VAE stage of a run and write its model bundle: a 2D model on slices, a 3D
model (`vqvae.dims: 3`) on whole subjects' volumes (brainvq.data.subject_volumes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch

from brainvq.config import to_dict
from brainvq.data.dataset import SliceDataModule, VolumeDataModule
from brainvq.data.sliceset import SliceSet
from brainvq.data.subject_volumes import VolumeDataset
from brainvq.run import RunLayout
from brainvq.run_config import RunConfig
from brainvq.training.callbacks import ReconstructionFrames
from brainvq.training.trainer import (
    check_batch_memory,
    finish_bundle,
    fit_stage,
    steps_per_epoch,
)
from brainvq.training.volume_frames import VolumeFrames
from brainvq.training.vqvae_module import VQVAEModule

N_FRAME_SLICES = 8
N_FRAME_VOLUMES = 2


def frame_slices(sliceset: SliceSet, n: int = N_FRAME_SLICES) -> torch.Tensor:
    """A fixed, evenly spaced set of validation slices: (n, 1, H, W) float in [0, 1]."""
    val = sliceset.split_rows("validate")
    idx = val[np.linspace(0, len(val) - 1, min(n, len(val))).round().astype(int)]
    return torch.from_numpy(sliceset.images[idx]).float().div(255).unsqueeze(1)  # (n, 1, H, W)


def frame_volumes(dataset: VolumeDataset, n: int = N_FRAME_VOLUMES) -> torch.Tensor:
    """The first n validation volumes: (n, 1, D, H, W) float in [0, 1]."""
    return torch.stack([dataset[i][0] for i in range(min(n, len(dataset)))])


def _data(
    config: RunConfig, sliceset: SliceSet, layout: RunLayout
) -> tuple[SliceDataModule, int, L.Callback]:
    """The loaders, the number of training items (slices or volumes) and the frames callback."""
    cfg = config.vqvae_train
    if config.vqvae.dims == 2:
        datamodule = SliceDataModule(
            sliceset, batch_size=cfg.batch_size, num_workers=config.data.num_workers, seed=cfg.seed
        )
        n_train = len(sliceset.split_rows("train"))
        return datamodule, n_train, ReconstructionFrames(layout.frames, frame_slices(sliceset))
    datamodule = VolumeDataModule(
        sliceset,
        batch_size=cfg.batch_size,
        num_workers=config.data.num_workers,
        seed=cfg.seed,
        level_stride=config.vqvae.level_downsample,
    )
    frames = VolumeFrames(layout.frames, frame_volumes(datamodule.dataset("validate")))
    return datamodule, len(datamodule.dataset("train")), frames


def fit_vqvae(
    run_dir: Path,
    config: RunConfig,
    sliceset: SliceSet,
    resume: bool = False,
    callbacks: Sequence[L.Callback] = (),
    progress_bar: bool = True,
) -> Path:
    """Train (or resume) the VQ-VAE of `run_dir` on `sliceset`; returns the bundle folder.
    `callbacks` join the trainer's own (e.g. a tuning trial's pruning callback).

    Writes RUN/vqvae/checkpoints/{last,best}.ckpt, RUN/vqvae/frames/epoch_XXX.png,
    RUN/vqvae/history.json, logs under RUN/logs/, and RUN/vqvae/VQVAE_Model/ (best by
    validation SSIM).
    """
    check_batch_memory(config, "vqvae")
    layout = RunLayout(run_dir)
    cfg = config.vqvae_train
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, n_train, frames = _data(config, sliceset, layout)
    world = cfg.devices * cfg.num_nodes
    total_steps = cfg.epochs * steps_per_epoch(
        n_train, cfg.batch_size, world, cfg.limit_train_batches
    )
    module = VQVAEModule(
        config.vqvae,
        cfg,
        augment=config.data.augment,
        total_steps=total_steps,
        adversarial=config.adversarial,
    )
    trainer, history = fit_stage(
        "vqvae",
        module,
        cfg,
        layout,
        callbacks=[frames, *callbacks],
        progress_bar=progress_bar,
        resume=resume,
        datamodule=datamodule,
    )
    meta = {
        "world_size": int(trainer.world_size),
        "codebook_sync_max_diff": module.codebook_sync_max_diff,
        # how the model was trained: the discriminator itself is never in the bundle
        "adversarial": to_dict(config.adversarial) if config.adversarial.changes_training else None,
        "discriminator_sync_max_diff": module.discriminator_sync_max_diff,
        "data_source": sliceset.source,
        "n_levels": int(sliceset.n_levels),
    }
    return finish_bundle("vqvae", trainer, history, module, cfg, layout, meta)
