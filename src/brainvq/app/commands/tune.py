"""`brainvq tune --stage vqvae|prior`: search a stage's hyperparameters with Optuna."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from brainvq.run_config import TUNE_STAGES

if TYPE_CHECKING:
    from brainvq.app.tune import TuneResult


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


def result_lines(result: TuneResult) -> list[str]:
    """What a tuning worker says when it ends: the study's counts and why it stopped, the best
    trial and its config, the baseline, and where to look."""
    summary = result.summary
    counts, metric = summary["counts"], summary["metric"]
    lines = [
        f"brainvq tune: study {summary['study']!r} ({metric}, {summary['direction']}): "
        f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed; "
        f"stopped: {result.stopped}"
    ]
    best, baseline = summary["best"], summary["baseline"]
    if best is not None:
        lines.append(f"best: trial {best['number']}, {metric} {best['value']:.4f}")
        lines += [f"  {key}: {value}" for key, value in best["params"].items()]
        lines.append(
            f"best config: {result.best_config} (brainvq train all --config FILE --out NEW_RUN)"
        )
    if baseline is not None and baseline["value"] is not None:
        value = baseline["value"]
        lines.append(
            f"baseline (the base config's values): trial {baseline['number']}, {metric} {value:.4f}"
        )
    lines.append(f"trials: {result.trials}; figures: {result.figures}")
    lines.append(f"watch it live: optuna-dashboard {result.storage}")
    return lines


def run(args: argparse.Namespace) -> int:
    from brainvq.app.tune import TuneJob, base_config, tune_stage

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
    base, note = base_config(job)
    if note:
        print(f"brainvq tune: {note}")
    for line in result_lines(tune_stage(job, base)):
        print(line)
    return 0
