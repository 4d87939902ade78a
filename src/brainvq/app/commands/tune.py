"""`brainvq tune --stage vqvae|prior`: search a stage's hyperparameters with Optuna."""

from __future__ import annotations

import argparse
from pathlib import Path

from brainvq.run_config import TUNE_STAGES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="search a stage's hyperparameters (Optuna): resumable, shared across machines",
        description="Each trial trains the stage from the base config with sampled values of "
        "its `tune:` space (or the default space) for --trial-minutes, and reports validation "
        "SSIM (vqvae) or NLL in bits per code (prior). Run it again to continue the study; "
        "run it on several machines with one --storage to share it.",
    )
    p.add_argument("--stage", choices=TUNE_STAGES, required=True)
    p.add_argument("--data", help="data source (default: the base config's)")
    p.add_argument(
        "--out",
        "--run",
        dest="run",
        type=Path,
        required=True,
        help="the run directory: the study and its outputs go to RUN/tune/",
    )
    p.add_argument(
        "--vqvae-run",
        type=Path,
        help="prior: the run whose VQ-VAE the trials train on (default: --out); its "
        "config.yaml is the default base config",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="the base config (YAML); its `tune:` section, if any, gives the space",
    )
    p.add_argument(
        "--trials",
        type=int,
        default=20,
        help="complete or pruned trials the study aims for, all workers together (default 20)",
    )
    p.add_argument(
        "--trial-minutes",
        type=float,
        help="each trial's training budget (default: the base config's max_minutes)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        help="this worker starts no trial that would end after this many minutes",
    )
    p.add_argument(
        "--storage",
        help="an Optuna storage URL shared by several workers, e.g. "
        "postgresql://user:password@host/db (default: sqlite:///RUN/tune/study.db)",
    )
    p.add_argument("--study", help="the study's name in the storage (default: the stage)")
    p.add_argument("--seed", type=int, help="seeds the sampler and every trial's training")
    p.add_argument("--accelerator", choices=["auto", "cpu", "gpu", "cuda", "mps"])
    p.add_argument("--threads", type=int, help="torch threads (default: one per CPU core)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brainvq.app.tune import TuneJob, tune_stage

    job = TuneJob(
        run_dir=args.run,
        stage=args.stage,
        trials=args.trials,
        trial_minutes=args.trial_minutes,
        max_minutes=args.max_minutes,
        storage=args.storage,
        study=args.study,
        vqvae_run=args.vqvae_run,
        config=args.config,
        data=args.data,
        seed=args.seed,
        accelerator=args.accelerator,
        threads=args.threads,
    )
    tune_stage(job)
    return 0
