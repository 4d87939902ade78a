"""`brainvq train vqvae|prior|all`: train one stage or both."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brainvq.app.pipeline import Trained

STAGES = ("vqvae", "prior", "all")


def add_training_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by every command that trains (they override the config file)."""
    p.add_argument("--config", type=Path, help="YAML config (see configs/); flags override it")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-minutes", type=float, help="stop a stage after this many minutes")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--accelerator", choices=["auto", "cpu", "gpu", "cuda", "mps"])
    p.add_argument("--devices", type=int, help="processes/GPUs per node (DDP when > 1)")
    p.add_argument("--num-nodes", type=int)
    p.add_argument(
        "--precision",
        choices=["auto", "32", "16-mixed", "bf16-mixed"],
        help="auto (default): bf16-mixed on GPUs and on CPUs with hardware bf16, else 32",
    )
    p.add_argument(
        "--threads", type=int, help="torch threads per process (default: one per CPU core)"
    )
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--adversarial",
        action="store_true",
        help="train the VQ-VAE with a patch discriminator (VQGAN); see the config's "
        "`adversarial` section",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from RUN/<stage>/checkpoints/last.ckpt"
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the VQ-VAE, the prior, or both")
    p.add_argument("stage", choices=STAGES)
    p.add_argument(
        "--data", help="data source: demo, an OASIS folder/zip, a PNG folder or NIfTI folder"
    )
    p.add_argument("--size", type=int, help="working size (a positive multiple of 8; default 128)")
    p.add_argument("--out", "--run", dest="run", type=Path, required=True, help="the run directory")
    add_training_flags(p)
    p.set_defaults(func=run)


def stage_overrides(args: argparse.Namespace, stages: tuple[str, ...]) -> dict[str, Any]:
    """Nested config overrides from the flags that were given."""
    train = {
        key: getattr(args, attr)
        for key, attr in (
            ("epochs", "epochs"),
            ("max_minutes", "max_minutes"),
            ("batch_size", "batch_size"),
            ("lr", "lr"),
            ("accelerator", "accelerator"),
            ("devices", "devices"),
            ("num_nodes", "num_nodes"),
            ("precision", "precision"),
            ("threads", "threads"),
            ("seed", "seed"),
        )
        if getattr(args, attr, None) is not None
    }
    out: dict[str, Any] = {f"{stage}_train": dict(train) for stage in stages}
    if getattr(args, "adversarial", False) and "vqvae" in stages:
        out["adversarial"] = {"enabled": True}
    data = {}
    if getattr(args, "data", None):
        data["source"] = args.data
    if getattr(args, "size", None) is not None:
        data["size"] = args.size
    if data:
        out["data"] = data
    return out


def say_resume(run_dir: Path, resume: bool, stages: tuple[str, ...] = ("vqvae", "prior")) -> None:
    """With --resume, a line for each of `stages` that starts from scratch."""
    from brainvq.app.pipeline import resume_notes

    for line in resume_notes(run_dir, stages) if resume else []:
        print(line)


def show_results(metrics: dict[str, Any], run_dir: Path) -> None:
    """The results table of a run's metrics.json."""
    from brainvq.report.summary import print_summary

    print_summary(metrics, title=f"brainvq results ({run_dir}; all metrics: metrics.json)")


def show_trained(trained: Trained, run_dir: Path) -> None:
    """What training both stages did (brainvq.app.pipeline.train_all): the results table and
    the report, in the process that wrote them."""
    if trained.report is None:
        return
    show_results(trained.metrics, run_dir)
    print(f"report: {trained.report}")


def run(args: argparse.Namespace) -> int:
    from brainvq.app import pipeline
    from brainvq.app.presets import prepare_training_run
    from brainvq.app.run_data import run_slices
    from brainvq.run import RunLayout, load_run
    from brainvq.training.trainer import check_batch_memory

    stages = ("vqvae", "prior") if args.stage == "all" else (args.stage,)
    overrides = stage_overrides(args, stages)
    has_config = RunLayout(args.run).config.is_file()
    if args.stage == "prior":
        load_run(args.run)  # the prior trains on an existing run's VQ-VAE
    elif not (args.data or args.config or has_config):
        raise ValueError(
            "say which data to train on: --data SOURCE (or --config FILE with data.source)"
        )
    config, note = prepare_training_run(args.run, args.config, args.data, overrides)
    if note:
        print(f"brainvq train: {note}")
    say_resume(args.run, args.resume, stages)
    if args.stage == "all":
        show_trained(pipeline.train_all(args.run, config, resume=args.resume), args.run)
        return 0
    check_batch_memory(config, args.stage)  # before the data is read
    sliceset = run_slices(config)
    if args.stage == "vqvae":
        metrics = pipeline.train_vqvae(args.run, config, sliceset, resume=args.resume)
    else:
        metrics = pipeline.train_prior(args.run, config, sliceset, resume=args.resume)
    if metrics:
        show_results(metrics, args.run)
    return 0
