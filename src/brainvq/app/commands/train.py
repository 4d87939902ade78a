"""`brainvq train vqvae|prior|all`: train one stage or both."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

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


def run(args: argparse.Namespace) -> int:
    from brainvq.app import pipeline
    from brainvq.app.presets import prepare_training_run
    from brainvq.app.run_data import run_slices
    from brainvq.report.summary import print_summary
    from brainvq.run import RunLayout, load_run
    from brainvq.training.trainer import check_batch_memory

    overrides = stage_overrides(args, ("vqvae", "prior") if args.stage == "all" else (args.stage,))
    has_config = RunLayout(args.run).config.is_file()
    if args.stage == "prior":
        load_run(args.run)  # the prior trains on an existing run's VQ-VAE
    elif not (args.data or args.config or has_config):
        raise ValueError(
            "say which data to train on: --data SOURCE (or --config FILE with data.source)"
        )
    config = prepare_training_run(args.run, args.config, args.data, overrides, "brainvq train")
    if args.stage == "all":
        pipeline.train_all(args.run, config, resume=args.resume)
        return 0
    check_batch_memory(config, args.stage)  # before the data is read
    sliceset = run_slices(config)
    if args.stage == "vqvae":
        metrics = pipeline.train_vqvae(args.run, config, sliceset, resume=args.resume)
    else:
        metrics = pipeline.train_prior(args.run, config, sliceset, resume=args.resume)
    if metrics:
        print_summary(metrics, title=f"brainvq results ({args.run}; all metrics: metrics.json)")
    return 0
