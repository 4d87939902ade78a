"""The one fit path of every training stage (the VQ-VAE, the prior, a pruned VQ-VAE's
fine-tuning): a Lightning Trainer built the same way (`make_trainer`), fitted (`fit_stage`),
and its best epoch written as the stage's bundle with the same meta (`finish_bundle`)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from brainvq.atomic import remove_stale_temporaries
from brainvq.config import to_dict
from brainvq.hardware import cpu_has_native_bf16, set_threads
from brainvq.io.bundle import save_bundle
from brainvq.io.checkpoint import CheckpointError, load_weights_only
from brainvq.progress import interactive
from brainvq.run import RunLayout
from brainvq.run_config import RunConfig, TrainConfig
from brainvq.training.callbacks import (
    AtomicCheckpointIO,
    EpochHistory,
    EpochLines,
    Throughput,
    median_throughput,
)
from brainvq.training.objectives import OBJECTIVES
from brainvq.values import check_memory


def resolve_precision(cfg: TrainConfig) -> str:
    """The Lightning precision for cfg.precision; "auto" picks the fastest one that is safe.

    On a CUDA GPU: bf16-mixed where supported, else 16-mixed. On a CPU with hardware bf16
    (AVX512-BF16/AMX): bf16-mixed, which trained the VQ-VAE faster with the same SSIM at equal
    steps (docs/results.md, "What moved the numbers"). Elsewhere (older CPUs, where bf16 is
    emulated and slow; MPS): 32. The quantizer and every metric run in fp32 whatever the
    precision.
    """
    if cfg.precision != "auto":
        return cfg.precision
    if cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if cfg.accelerator in ("auto", "cpu") and cpu_has_native_bf16():
        return "bf16-mixed"
    return "32"


def batch_item_bytes(config: RunConfig, stage: str) -> int:
    """The least memory one training item of `stage` takes: for the VQ-VAE its input and
    reconstruction and its first layer's activations (float32 a pixel), for the prior its
    logits and its first layer's activations (float32 a code), each with its gradient. A 3D
    VQ-VAE's item is a volume: data.n_levels slices at the least (a z range has more)."""
    if stage == "vqvae":
        side = config.vqvae.image_size
        levels = config.data.n_levels if config.vqvae.dims == 3 else 1
        return 2 * 4 * side * side * levels * (2 + config.vqvae.channels[0])
    side = config.vqvae.latent_size
    return 2 * 4 * side * side * (config.vqvae.codebook_size + config.prior.channels)


def check_batch_memory(config: RunConfig, stage: str) -> None:
    """ValueError in one line naming --batch-size when a training batch of `stage` cannot fit
    in the memory left (brainvq.values.check_memory, `batch_item_bytes`): before any work."""
    check_memory(
        "--batch-size",
        getattr(config, f"{stage}_train").batch_size,
        batch_item_bytes(config, stage),
        f"one {stage} training item's activations and gradients, at the least",
    )


def steps_per_epoch(n_train: int, batch_size: int, world: int, limit: int | None) -> int:
    """Optimiser steps in one epoch of n_train items over `world` processes (at most `limit`)."""
    steps = math.ceil(n_train / (batch_size * world))
    return min(steps, limit) if limit else steps


def make_trainer(
    cfg: TrainConfig,
    layout: RunLayout,
    stage: str,
    extra_callbacks: Sequence[L.Callback] = (),
    progress_bar: bool = True,
    manual_optimization: bool = False,
) -> tuple[L.Trainer, EpochHistory]:
    """A Trainer for `stage` of the run at `layout`: it checkpoints every epoch to
    RUN/<stage>/checkpoints/ (last.ckpt, and best.ckpt by the stage's objective), logs to
    TensorBoard and CSV under RUN/logs/, and keeps the per-epoch history in
    RUN/<stage>/history.json.
    progress_bar=False: no per-step bar (a caller that shows its own, e.g. `brainvq tune`).
    manual_optimization: the module optimises itself (several optimisers, as the adversarial
    VQ-VAE): it clips its own gradients, and DDP is told that a backward pass may leave some
    parameters without gradients (the discriminator's, then the VQ-VAE's)."""
    stage_dir = layout.stage(stage)
    logs_dir = layout.logs
    if cfg.threads is not None:
        set_threads(cfg.threads)
        # Lightning's DDP launcher divides the cores between processes unless this is set
        os.environ["OMP_NUM_THREADS"] = str(cfg.threads)
    history = EpochHistory(layout.history(stage))
    # Two callbacks: Lightning >= 2.5 writes `save_last` only when the top-k one saved, but a
    # resume needs the latest epoch whatever its score.
    objective = OBJECTIVES[stage]
    best = ModelCheckpoint(
        dirpath=layout.checkpoints(stage),
        filename="best",
        monitor=objective.metric,
        mode=objective.mode,
        save_top_k=1,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    last = ModelCheckpoint(
        dirpath=layout.checkpoints(stage),
        filename=layout.last_checkpoint(stage).stem,
        save_top_k=1,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    loggers = [
        TensorBoardLogger(
            save_dir=str(logs_dir), name="tensorboard", version=stage, default_hp_metric=False
        ),
        CSVLogger(save_dir=str(logs_dir), name="csv", version=stage),
    ]
    max_time = {"seconds": int(cfg.max_minutes * 60)} if cfg.max_minutes else None
    strategy = cfg.strategy
    if strategy == "auto" and cfg.devices * cfg.num_nodes > 1:
        strategy = "ddp"
    if manual_optimization and strategy == "ddp":
        strategy = "ddp_find_unused_parameters_true"
    # a live bar on a terminal; one line per epoch in a log, where every redraw would be kept
    progress = TQDMProgressBar() if interactive() else EpochLines(stage)
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        max_time=max_time,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=strategy,
        precision=resolve_precision(cfg),
        gradient_clip_val=None if manual_optimization else cfg.gradient_clip or None,
        deterministic=cfg.deterministic,
        log_every_n_steps=cfg.log_every_n_steps,
        limit_train_batches=cfg.limit_train_batches,
        callbacks=[
            Throughput(),
            history,
            best,
            last,
            LearningRateMonitor("step"),
            *([progress] if progress_bar else []),
            *extra_callbacks,
        ],
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(stage_dir),
        enable_model_summary=False,
        enable_progress_bar=progress_bar,
        num_sanity_val_steps=0,
    )
    return trainer, history


def resume_checkpoint(last: Path, resume: bool) -> str | None:
    """The checkpoint to resume from: `last` (a stage's last.ckpt) when asked and present;
    None otherwise (the command says that a stage starts from scratch:
    brainvq.app.pipeline.resume_notes)."""
    if not resume:
        return None
    if last.is_file():
        try:
            load_weights_only(last)
        except CheckpointError as e:
            raise ValueError(
                f"cannot resume from {last}: it is not a checkpoint that loads with "
                "weights_only=True "
                f"(it may be damaged or hold code to run, which brainvq never executes): {e}"
            ) from None
        return str(last)
    return None


def load_model_weights(checkpoint: str | Path, model: torch.nn.Module) -> torch.nn.Module:
    """Load the `model.*` weights of a Lightning checkpoint (weights_only=True) into `model`."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(
        {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    )
    return model.eval()


def best_checkpoint(trainer: L.Trainer) -> str:
    """Path of the best checkpoint by the monitored metric ('' if none was saved)."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor is not None:
            return callback.best_model_path
    return ""


def fit_stage(
    stage: str,
    module: L.LightningModule,
    cfg: TrainConfig,
    layout: RunLayout,
    *,
    callbacks: Sequence[L.Callback] = (),
    progress_bar: bool = True,
    resume: bool = False,
    **data: Any,
) -> tuple[L.Trainer, EpochHistory]:
    """Fit `module` as `stage` of the run at `layout` (make_trainer; `callbacks` join the
    trainer's own), continuing from the stage's last.ckpt when `resume` and it exists. `data`:
    Trainer.fit's datamodule=, or train_dataloaders= and val_dataloaders=."""
    trainer, history = make_trainer(
        cfg,
        layout,
        stage,
        extra_callbacks=callbacks,
        progress_bar=progress_bar,
        manual_optimization=not module.automatic_optimization,
    )
    if trainer.is_global_zero:
        remove_stale_temporaries(layout.stage(stage))  # left by a run killed mid-write
    ckpt_path = resume_checkpoint(layout.last_checkpoint(stage), resume)
    trainer.fit(module, ckpt_path=ckpt_path, weights_only=True, **data)
    return trainer, history


def finish_bundle(
    stage: str,
    trainer: L.Trainer,
    history: EpochHistory,
    module: L.LightningModule,
    cfg: TrainConfig,
    layout: RunLayout,
    meta: dict[str, Any],
) -> Path:
    """Write the stage's bundle (RUN/<stage>/<bundle folder>) from the best checkpoint by the
    stage's objective, else from the module's last weights, with `meta` and what every stage
    records: epochs, the checkpoint used, the training config and precision, parameters and
    median throughput. Only the process of global rank zero writes. Returns the folder."""
    folder = layout.bundle(stage)
    if not trainer.is_global_zero:
        return folder
    best = best_checkpoint(trainer)
    model = module.model
    if best:  # a model of the same config, with the best epoch's weights
        model = load_model_weights(best, type(model)(model.config))
    meta = {
        "epochs_trained": int(trainer.current_epoch),
        "best_checkpoint": Path(best).name if best else None,
        **meta,
        "train_config": to_dict(cfg),
        "precision": resolve_precision(cfg),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_items_per_s": median_throughput(history.rows),
    }
    return save_bundle(folder, model.eval(), model.config, kind=stage, meta=meta)
