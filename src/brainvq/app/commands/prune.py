"""`brainvq prune`: a smaller VQ-VAE in a new run (structured L1-norm channel pruning of the
encoder and decoder, fine-tuned), whose codes the source run's prior still models."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="prune a run's VQ-VAE (channels), fine-tune it and write it as a new run",
        description=(
            "Remove the share --amount of the VQ-VAE's prunable channels (those with the "
            "smallest L1 norm; the code and codebook stay), fine-tune for --finetune-minutes "
            "with the frozen codebook, and write --out as a run: config.yaml, "
            "vqvae/VQVAE_Model, metrics.json (the pruned model's evaluation, and under "
            "`prune` the channels removed and the prior's NLL on the new codes), and a copy of "
            "the source run's prior."
        ),
    )
    p.add_argument("--run", type=Path, required=True, help="the run whose VQ-VAE to prune")
    p.add_argument(
        "--amount", type=float, required=True, help="share of prunable channels to remove, [0, 1)"
    )
    p.add_argument(
        "--finetune-minutes",
        type=float,
        required=True,
        help="minutes of fine-tuning (0: write the pruned model as it is)",
    )
    p.add_argument("--lr", type=float, help="fine-tuning learning rate (default: 0.1 x the run's)")
    p.add_argument("--out", type=Path, required=True, help="the new run directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brainvq.app.prune import prune_run
    from brainvq.run import RunLayout

    metrics = prune_run(args.run, args.amount, args.finetune_minutes, args.out, lr=args.lr)
    p, v = metrics["prune"], metrics["vqvae"]
    if p["code_nll_bits_val"] is None:
        prior = RunLayout(args.run).bundle("prior")
        print(f"{args.run} has no prior ({prior}): no NLL of the new codes to report")
    print(
        f"pruned {p['prunable_channels'] - p['kept_channels']} of {p['prunable_channels']} "
        f"prunable channels ({p['removed_fraction']:.1%}): parameters {p['parameters_before']:,} "
        f"-> {p['parameters_after']:,}, MFLOPs per image {p['mflops_before']:.1f} -> "
        f"{p['mflops_after']:.1f}"
    )
    print(
        f"fine-tuned {p['finetune_minutes']} min at lr {p['finetune_lr']:.3g}: SSIM "
        f"{v['ssim']:.4f} on {v['split']}"
    )
    if p["code_nll_bits_val"] is not None:
        print(
            f"prior NLL on validation codes: {p['code_nll_bits_val']:.3f} bits/code (source "
            f"model's codes: {p['source_code_nll_bits_val']:.3f}); codes identical to the "
            f"source model's: {p['codes_identical_val']:.1%}"
        )
    print(f"wrote the run {args.out} (metrics: {args.out / 'metrics.json'})")
    return 0
