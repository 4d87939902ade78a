"""`brainvq tune --stage vqvae|prior`: search a stage's hyperparameters with Optuna."""

from __future__ import annotations

import argparse
from pathlib import Path

from brainvq.app.commands.train import resolve_config_file
from brainvq.run import TUNE_STAGES


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
    from brainvq.config import to_dict
    from brainvq.run import RunLayout, load_run_config, merge

    train = {k: getattr(args, k) for k in ("accelerator", "threads", "seed")}
    overrides: dict = {f"{args.stage}_train": {k: v for k, v in train.items() if v is not None}}
    if args.data:
        overrides["data"] = {"source": args.data}
    if args.stage == "prior":
        vqvae_run = RunLayout(args.vqvae_run or args.run)
        config_file = args.config or vqvae_run.config
        if not Path(config_file).is_file():
            raise FileNotFoundError(
                f"{vqvae_run.config} is missing: a prior study starts from the config of the "
                "run whose VQ-VAE it uses (--vqvae-run, default --out), or from --config FILE"
            )
        preset = None
    else:
        if not (args.data or args.config or RunLayout(args.run).config.is_file()):
            raise ValueError(
                "say which data to tune on: --data SOURCE (or --config FILE with data.source)"
            )
        config_file, preset = resolve_config_file(args.run, args.config, args.data, "brainvq tune")
        config_file = config_file or RunLayout(args.run).config
    if preset is not None:
        overrides = merge(overrides, {"preset": to_dict(preset)})
    base = load_run_config(config_file, overrides)
    job = TuneJob(
        run_dir=args.run,
        stage=args.stage,
        trials=args.trials,
        trial_minutes=args.trial_minutes,
        max_minutes=args.max_minutes,
        storage=args.storage,
        study=args.study,
        vqvae_run=args.vqvae_run,
    )
    tune_stage(job, base)
    return 0
