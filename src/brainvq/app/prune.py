"""`brainvq prune` as a function a notebook can call: a smaller VQ-VAE in a new run (structured
L1-norm channel pruning of the encoder and decoder, fine-tuned; brainvq.training.pruning), whose
codes the source run's prior still models."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from brainvq.app.pipeline import evaluate_run
from brainvq.app.run_data import run_slices
from brainvq.atomic import output_folder
from brainvq.evaluation.prior import code_nll_bits
from brainvq.inference.codes import CodeSet, encode_images, encode_splits
from brainvq.io.bundle import load_prior, load_vqvae, save_bundle
from brainvq.run import RunLayout, load_run, record_timing, update_metrics
from brainvq.run_config import PresetInfo, save_run_config
from brainvq.training.pruning import (
    default_finetune_lr,
    finetune_vqvae,
    model_cost,
    prune_vqvae,
    pruning_summary,
)
from brainvq.values import MINUTES_OR_ZERO, POSITIVE, SHARE


def prune_run(
    run_dir: Path, amount: float, minutes: float, out: Path, lr: float | None = None
) -> dict[str, Any]:
    """Prune RUN's VQ-VAE, fine-tune it and write the new run `out` (see `brainvq prune -h`).

    Returns out's metrics.json: `vqvae` (evaluate_run) and `prune` (amount, channels, cost,
    fine-tuning, and with a prior: code_nll_bits_val of the prior on the pruned model's
    validation codes next to source_code_nll_bits_val on the source model's, and
    codes_identical_val, the share of validation codes both models agree on; all three None
    when the source run has no prior).

    Every argument is checked before anything is written, and out's config.yaml, which makes
    it a run, is written last: a prune that is refused or fails leaves `out` usable again.
    """
    SHARE.check("--amount", amount)
    MINUTES_OR_ZERO.check("--finetune-minutes", minutes)
    if lr is not None:
        POSITIVE.check("--lr", lr)
    source = RunLayout(run_dir)
    config = load_run(run_dir)
    target = RunLayout(output_folder(out, "--out"))
    if target.root.resolve() == source.root.resolve():
        raise ValueError(f"--out {out} is the source run; choose a new folder for the pruned run")
    if target.config.is_file():
        raise ValueError(f"--out {out} already holds a run ({target.config}); choose a new folder")
    original = load_vqvae(source.bundle("vqvae"))
    result = prune_vqvae(original.model, amount)
    sliceset = run_slices(config)
    lr = lr or default_finetune_lr(config)
    reason = f"brainvq prune --run {run_dir} --amount {amount} --finetune-minutes {minutes}"
    pruned_config = replace(
        config, vqvae=result.config, preset=PresetInfo(name=config.preset.name, reason=reason)
    )
    pruned_config.validate()
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
    metrics = update_metrics(out, "prune", values)
    save_run_config(pruned_config, target.config)
    return metrics
