"""`brainvq prune`: a smaller VQ-VAE in a new run (structured L1-norm channel pruning of the
encoder and decoder, fine-tuned), whose codes the source run's prior still models."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


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


def prune_run(
    run_dir: Path, amount: float, minutes: float, out: Path, lr: float | None = None
) -> dict[str, Any]:
    """Prune RUN's VQ-VAE, fine-tune it and write the new run `out` (see `brainvq prune -h`).

    Returns out's metrics.json: `vqvae` (evaluate_run) and `prune` (amount, channels, cost,
    fine-tuning, and with a prior: code_nll_bits_val of the prior on the pruned model's
    validation codes next to source_code_nll_bits_val on the source model's, and
    codes_identical_val, the share of validation codes both models agree on).
    """
    from brainvq.app.pipeline import evaluate_run, run_slices
    from brainvq.evaluation.prior import code_nll_bits
    from brainvq.inference.codes import CodeSet, encode_images, encode_splits
    from brainvq.io.atomic import output_folder
    from brainvq.io.bundle import load_prior, load_vqvae, save_bundle
    from brainvq.run import (
        PresetInfo,
        RunLayout,
        load_run,
        record_timing,
        save_run_config,
        update_metrics,
    )
    from brainvq.training.pruning import (
        default_finetune_lr,
        finetune_vqvae,
        model_cost,
        prune_vqvae,
        pruning_summary,
    )

    source = RunLayout(run_dir)
    config = load_run(run_dir)
    target = RunLayout(output_folder(out, "--out"))
    if target.root.resolve() == source.root.resolve():
        raise ValueError(f"--out {out} is the source run; choose a new folder for the pruned run")
    if target.config.is_file():
        raise ValueError(f"--out {out} already holds a run ({target.config}); choose a new folder")
    if not minutes >= 0:
        raise ValueError(f"--finetune-minutes: expected a number >= 0, got {minutes}")
    if lr is not None and not lr > 0:
        raise ValueError(f"--lr: expected a number > 0, got {lr}")
    original = load_vqvae(source.bundle("vqvae"))
    result = prune_vqvae(original.model, amount)
    sliceset = run_slices(config)
    lr = lr or default_finetune_lr(config)
    reason = f"brainvq prune --run {run_dir} --amount {amount} --finetune-minutes {minutes}"
    pruned_config = replace(
        config, vqvae=result.config, preset=PresetInfo(name=config.preset.name, reason=reason)
    )
    pruned_config.validate()
    save_run_config(pruned_config, target.config)
    summary = pruning_summary(result)
    start = time.perf_counter()
    meta = {"pruned_from": str(source.bundle("vqvae")), **summary}
    bundle = finetune_vqvae(
        out, pruned_config, sliceset, result, minutes, lr, meta, teacher=original.model
    )
    record_timing(out, "prune_finetune_s", time.perf_counter() - start)
    evaluate_run(out, sliceset)
    pruned = load_vqvae(bundle)
    before, after = model_cost(original.model), model_cost(pruned.model)
    values: dict[str, Any] = {
        "source_run": str(run_dir),
        **summary,
        "finetune_minutes": minutes,
        "finetune_lr": lr,
        "parameters_before": before["parameters"],
        "parameters_after": after["parameters"],
        "mflops_before": before["mflops"],
        "mflops_after": after["mflops"],
        "code_nll_bits_val": None,
        "source_code_nll_bits_val": None,
        "codes_identical_val": None,
    }
    prior_folder = source.bundle("prior")
    if prior_folder.is_dir():
        prior = load_prior(prior_folder)
        prior_meta = {**prior.meta, "copied_from": str(prior_folder)}
        save_bundle(target.bundle("prior"), prior.model, prior.config, "prior", meta=prior_meta)
        validate = encode_splits(pruned, sliceset, target.codes)["validate"]
        images = sliceset.require_split("validate").images
        source_codes = CodeSet(encode_images(original.model, images), validate.level, "validate")
        values |= {
            "code_nll_bits_val": code_nll_bits(prior, validate),
            "source_code_nll_bits_val": code_nll_bits(prior, source_codes),
            "codes_identical_val": float(np.mean(validate.codes == source_codes.codes)),
        }
    else:
        print(f"{run_dir} has no prior ({prior_folder}): no NLL of the new codes to report")
    return update_metrics(out, "prune", values)


def run(args: argparse.Namespace) -> int:
    metrics = prune_run(args.run, args.amount, args.finetune_minutes, args.out, lr=args.lr)
    p, v = metrics["prune"], metrics["vqvae"]
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
