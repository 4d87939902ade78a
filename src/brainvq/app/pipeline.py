"""The whole pipeline as functions a notebook can call: the CLI only parses and calls these.

Each stage writes its part of the run directory (brainvq.run.RunLayout): the trained bundle,
its metrics, and the files the report is drawn from; the report then reads files only.
Nothing outside the run directory is written except the data cache. Nothing here prints: the
functions return what happened and the commands (brainvq.app.commands) say it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainvq.app.run_data import run_frame, run_slices
from brainvq.app.run_files import write_data_summary, write_figure_samples, write_reconstructions
from brainvq.data.sliceset import SliceSet
from brainvq.evaluation.reconstruction import evaluate_vqvae
from brainvq.io.bundle import load_vqvae
from brainvq.run import RunLayout, packaged_config, prepare_run, record_timing, update_metrics
from brainvq.run_config import RunConfig


@dataclass(frozen=True)
class Trained:
    """What `train_all` did: metrics.json after both stages and the report page (report None
    in other DDP ranks, which write neither)."""

    metrics: dict[str, Any]
    report: Path | None


def resume_notes(run_dir: Path, stages: Sequence[str]) -> list[str]:
    """For --resume: a line for each of `stages` that has no last checkpoint to continue from
    and so starts from scratch (brainvq.training.trainer.resume_checkpoint)."""
    layout = RunLayout(run_dir)
    return [
        f"--resume: no checkpoint at {layout.last_checkpoint(stage)} yet; starting from scratch"
        for stage in stages
        if not layout.last_checkpoint(stage).is_file()
    ]


def is_global_zero() -> bool:
    """True in the process that writes shared outputs (rank 0, or the only process)."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def evaluate_run(run_dir: Path, sliceset: SliceSet, split: str | None = None) -> dict[str, Any]:
    """Evaluate RUN's VQ-VAE on `split` (default test, else validate): metrics.json `vqvae`,
    and what the evaluation saw for the report (RUN/evaluation/). Returns metrics.json."""
    layout = RunLayout(run_dir)
    bundle = load_vqvae(layout.bundle("vqvae"))
    split = sliceset.eval_split(split)
    metrics, arrays = evaluate_vqvae(bundle, sliceset, split)
    write_data_summary(layout, sliceset, split)
    codebook = bundle.model.quantizer.codebook.detach().cpu().numpy()
    stretch = None
    if bundle.config.dims == 3:  # whole volumes for the three-plane figure, at true spacing
        from brainvq.app.subjects import subject_space

        stretch = subject_space(run_dir, sliceset.size, 0).stretch
    write_reconstructions(layout, sliceset, split, arrays, codebook, stretch)
    return update_metrics(run_dir, "vqvae", metrics)


def train_vqvae(
    run_dir: Path, config: RunConfig, sliceset: SliceSet, resume: bool = False
) -> dict[str, Any]:
    """Train the VQ-VAE stage and evaluate it. Returns metrics.json ({} in other DDP ranks)."""
    from brainvq.training.fit_vqvae import fit_vqvae

    start = time.perf_counter()
    fit_vqvae(run_dir, config, sliceset, resume=resume)
    if not is_global_zero():
        return {}
    record_timing(run_dir, "train_vqvae_s", time.perf_counter() - start)
    start = time.perf_counter()
    metrics = evaluate_run(run_dir, sliceset)
    record_timing(run_dir, "evaluate_vqvae_s", time.perf_counter() - start)
    return metrics


def train_prior(
    run_dir: Path, config: RunConfig, sliceset: SliceSet, resume: bool = False
) -> dict[str, Any]:
    """Train the prior on the VQ-VAE's codes, evaluate it and draw the samples the report
    shows. Returns metrics.json ({} in other DDP ranks)."""
    from brainvq.evaluation.prior import evaluate_prior
    from brainvq.inference.run_models import load_run_models
    from brainvq.training.fit_prior import fit_prior

    start = time.perf_counter()
    fit_prior(run_dir, config, sliceset, resume=resume)
    if not is_global_zero():
        return {}
    record_timing(run_dir, "train_prior_s", time.perf_counter() - start)
    start = time.perf_counter()
    models = load_run_models(run_dir)
    level_mm = run_frame(run_dir, config)[0].level_spacing_mm
    metrics = evaluate_prior(run_dir, config, sliceset, models, level_mm)
    record_timing(run_dir, "evaluate_prior_s", time.perf_counter() - start)
    start = time.perf_counter()
    part = sliceset.require_split(sliceset.eval_split())
    write_figure_samples(RunLayout(run_dir), models, config.sample, part)
    if models.n_levels > 1:
        from brainvq.app.subjects import write_run_subjects

        write_run_subjects(run_dir, part, models, config.sample)
    record_timing(run_dir, "report_samples_s", time.perf_counter() - start)
    return update_metrics(run_dir, "prior", metrics)


def train_all(run_dir: Path, config: RunConfig, resume: bool = False) -> Trained:
    """Both stages, their evaluation and the report."""
    from brainvq.report.build import build_report
    from brainvq.training.trainer import check_batch_memory

    for stage in ("vqvae", "prior"):  # before the data is read
        check_batch_memory(config, stage)
    start = time.perf_counter()
    sliceset = run_slices(config)
    record_timing(run_dir, "load_data_s", time.perf_counter() - start)
    train_vqvae(run_dir, config, sliceset, resume=resume)
    metrics = train_prior(run_dir, config, sliceset, resume=resume)
    if not is_global_zero():
        return Trained(metrics, None)
    start = time.perf_counter()
    html = build_report(run_dir)
    record_timing(run_dir, "report_s", time.perf_counter() - start)
    return Trained(metrics, html)


def run_demo(
    run_dir: Path, quick: bool = False, resume: bool = False, whole_brain: bool = False
) -> Trained:
    """The main job on the demo cohort (`--quick`: a smoke run of about a minute).

    whole_brain: the cohort rendered over the whole brain's levels, with the whole-brain
    config's models and budgets (configs/whole_brain.yaml); with quick, quick's tiny models
    over the same levels."""
    from brainvq.run_config import PresetInfo, load_run_config

    start = time.perf_counter()
    name = "whole_brain" if whole_brain and not quick else "quick" if quick else "demo"
    flags = " --quick" * quick + " --whole-brain" * whole_brain
    preset = PresetInfo(name=name, reason="brainvq demo" + flags)
    overrides: dict[str, Any] = {"data": {"source": "demo"}}
    if whole_brain and quick:
        levels = load_run_config(packaged_config("whole_brain")).data.z_range_mm
        overrides["data"]["z_range_mm"] = list(levels)
    config = prepare_run(run_dir, packaged_config(name), overrides, preset=preset)
    trained = train_all(run_dir, config, resume=resume)
    record_timing(run_dir, "total_s", time.perf_counter() - start)
    return trained
