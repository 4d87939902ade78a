"""Adversarial VQ-VAE training at equal minutes: plain vs adversarial vs adversarial + frequency.

Every variant trains on the same data with the same seed, one after the other in this process
(so they never share the cores): the VQ-VAE for --minutes, then the PixelCNN prior for
--prior-minutes (default: the same) on that VQ-VAE's codes. Epoch limits are lifted, so the
clock alone ends each stage (the learning rate anneals within the budget). Then, per variant,
on the validate split:

- SSIM, PSNR, MAE of the reconstructions of every validate slice (brainvq.metrics);
- the sharpness ratio of the reconstructions: high-frequency power, reconstruction / original
  (brainvq.evaluation.generation_metrics.sharpness_ratio);
- the Frechet distance of the reconstructions to the originals in the level classifier's
  features;
- for --samples slices drawn from the prior (levels spread evenly, the run's sampling
  settings): the Frechet distance to the real reference slices, the level accuracy (within 2
  levels) and the sharpness ratio, as `brainvq train prior` measures them.

One level classifier, trained once on the real training slices with the pipeline's settings,
scores every variant, so all distances are in the same features. The script prints one table
with the machine in its header and writes a figure of the same validate slices reconstructed by
each variant, each with a zoomed crop of its most detailed region (--figure).

    .venv/bin/python benchmarks/bench_gan.py --data ../shared/oasis --minutes 15 \\
        --keep runs/bench_gan --figure docs/gan_reconstructions.png
    .venv/bin/python benchmarks/bench_gan.py --quick      # smoke test: demo cohort, 32x32
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from brainvq.app.run_data import run_slices
from brainvq.atomic import atomic_path
from brainvq.config import to_dict
from brainvq.data.sliceset import SliceSet
from brainvq.evaluation.generation_metrics import (
    extract_features,
    frechet_distance,
    level_accuracy,
    sharpness_ratio,
)
from brainvq.evaluation.level_classifier import train_level_classifier
from brainvq.evaluation.prior import CLASSIFIER_SIZE, reference_sets
from brainvq.evaluation.reconstruction import evaluate_vqvae
from brainvq.hardware import machine
from brainvq.inference.generate import generate_slices, spread_levels
from brainvq.inference.run_models import load_run_models
from brainvq.inference.sampling_options import SamplingOptions
from brainvq.io.bundle import load_vqvae
from brainvq.models.level_classifier import LevelClassifier, LevelClassifierConfig
from brainvq.run import RunLayout, packaged_config, prepare_run
from brainvq.run_config import RunConfig, SampleConfig, merge
from brainvq.training.fit_prior import fit_prior
from brainvq.training.fit_vqvae import fit_vqvae
from brainvq.training.trainer import resolve_precision

# Epoch limits high enough that --minutes always ends a stage first.
NO_EPOCH_LIMIT = 10_000
FIGURE_SLICES = 4
CROP_FRACTION = 4  # the zoomed crop is a quarter of the slice's side
FOREGROUND = 0.02  # brain pixels: above this intensity (skull-stripped background is 0)
CROP_INSIDE = 0.95  # share of the crop that must be brain
# The --quick smoke test: tests/configs/tiny.yaml's models on the demo cohort at 32x32.
QUICK = {
    "data": {"source": "demo", "size": 32, "demo_subjects": [3, 1, 1]},
    "vqvae": {
        "channels": [8, 16],
        "res_blocks": 1,
        "res_channels": 8,
        "code_dim": 8,
        "codebook_size": 16,
        "restart_buffer": 256,
        "dead_code_steps": 5,
    },
    "vqvae_train": {"batch_size": 16, "lr": 0.003, "warmup_steps": 2},
    "prior": {"embed_dim": 8, "channels": 8, "n_layers": 2, "head_channels": 16},
    "prior_train": {"batch_size": 16, "lr": 0.003, "warmup_steps": 2},
    "adversarial": {"start_step": 6, "channels": 4},
}


def variants(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """(name, overrides of the `adversarial` section) for the three variants."""
    adversarial: dict[str, Any] = {"enabled": True}
    for key, value in (
        ("start_step", args.start_step),
        ("weight", args.adv_weight),
        ("channels", args.disc_channels),
    ):
        if value is not None:
            adversarial[key] = value
    return [
        ("plain", {}),
        ("adversarial", adversarial),
        ("adversarial+freq", {**adversarial, "frequency_weight": args.freq_weight}),
    ]


def base_overrides(args: argparse.Namespace) -> dict[str, Any]:
    train = {"epochs": NO_EPOCH_LIMIT, "seed": args.seed}
    if args.threads:
        train["threads"] = args.threads
    out: dict[str, Any] = {
        "vqvae_train": {**train, "max_minutes": args.minutes},
        "prior_train": {**train, "max_minutes": args.prior_minutes or args.minutes},
        "sample": {"n_generation_eval": args.samples},
    }
    if args.quick:
        out = merge(QUICK, out)
    if args.data:
        out = merge(out, {"data": {"source": args.data}})
    return out


def train_variant(run: Path, config_file: Path | None, overrides: dict) -> dict[str, Any]:
    """Train both stages of one variant; returns what the table needs from the training."""
    config = prepare_run(run, config_file, overrides)
    sliceset = run_slices(config, progress=False)
    start = time.perf_counter()
    fit_vqvae(run, config, sliceset)
    vqvae_s = time.perf_counter() - start
    start = time.perf_counter()
    fit_prior(run, config, sliceset)
    prior_s = time.perf_counter() - start
    layout = RunLayout(run)
    meta = load_vqvae(layout.bundle("vqvae")).meta
    return {
        "config": config,
        "vqvae_epochs": meta["epochs_trained"],
        "vqvae_items_per_s": meta["train_items_per_s"],
        "vqvae_s": vqvae_s,
        "prior_s": prior_s,
    }


def level_classifier(sliceset: SliceSet, seed: int) -> LevelClassifier:
    """The level classifier as `brainvq train prior`'s evaluation trains it."""
    train = sliceset.require_split("train")
    return train_level_classifier(
        train.images,
        train.level,
        LevelClassifierConfig(
            image_size=min(CLASSIFIER_SIZE, sliceset.size),
            n_levels=int(sliceset.n_levels),
            epochs=max(4, math.ceil(SampleConfig().classifier_presentations / len(train))),
            seed=seed,
        ),
        progress=False,
    )


def measure(
    run: Path, config: RunConfig, sliceset: SliceSet, classifier: LevelClassifier
) -> tuple[dict[str, float], np.ndarray]:
    """The table's measures of one variant, and its reconstructions of the validate split."""
    bundle = load_vqvae(RunLayout(run).bundle("vqvae"))
    rec, arrays = evaluate_vqvae(bundle, sliceset, "validate")
    recons, originals = arrays["recons"], arrays["originals"]
    row = {
        "ssim": rec["ssim"],
        "psnr": rec["psnr"],
        "mae": rec["mae"],
        "recon_sharpness": sharpness_ratio(recons, originals),
        "recon_fd": frechet_distance(
            extract_features(classifier, recons), extract_features(classifier, originals)
        ),
    }
    s = config.sample
    models = load_run_models(run)
    levels = spread_levels(s.n_generation_eval, models.n_levels)
    _, generated = generate_slices(
        models,
        s.n_generation_eval,
        levels,
        options=SamplingOptions(temperature=s.temperature, top_k=s.top_k, seed=s.seed),
        progress=False,
    )
    refs = reference_sets(sliceset, s.n_generation_eval, s.seed)
    real = extract_features(classifier, refs.test.images)
    row["sample_fd"] = frechet_distance(extract_features(classifier, generated), real)
    row["level_accuracy"] = (
        level_accuracy(classifier, generated, levels) if levels is not None else float("nan")
    )
    row["sample_sharpness"] = sharpness_ratio(generated, refs.test.images)
    return row, recons


def _window_sums(values: np.ndarray, side: int, step: int) -> dict[tuple[int, int], float]:
    """Sum of values (H, W) over every side x side window on a grid of `step`, by (top, left)."""
    table = np.pad(values, ((1, 0), (1, 0))).cumsum(0).cumsum(1)  # summed-area table
    h, w = values.shape
    return {
        (t, left): float(
            table[t + side, left + side]
            - table[t, left + side]
            - table[t + side, left]
            + table[t, left]
        )
        for t in range(0, h - side + 1, step)
        for left in range(0, w - side + 1, step)
    }


def detailed_crop(image: np.ndarray, side: int) -> tuple[int, int]:
    """(top, left) of the side x side window of image (H, W) in [0, 1] with the most gradient
    energy among those nearly all inside the brain, so the crop shows folds, not the edge
    between brain and background."""
    gy, gx = np.gradient(image.astype(np.float64))
    step = max(side // 4, 1)
    energy = _window_sums(gy**2 + gx**2, side, step)
    inside = _window_sums((image > FOREGROUND).astype(np.float64), side, step)
    candidates = [k for k, n in inside.items() if n >= CROP_INSIDE * side * side] or list(energy)
    return max(candidates, key=energy.__getitem__)


def figure_slices(validate: SliceSet, n: int) -> np.ndarray:
    """Indices of n validate slices of different subjects at mid-brain levels (most cortex)."""
    levels = np.linspace(0.35, 0.75, n) * (int(validate.level.max()) + 1)
    subjects = np.unique(validate.subject)
    chosen = []
    for i, level in enumerate(levels.round().astype(int)):
        subject = subjects[(i * len(subjects)) // n]
        candidates = np.flatnonzero((validate.subject == subject) & (validate.level == level))
        if len(candidates) == 0:
            candidates = np.flatnonzero(validate.subject == subject)
        chosen.append(int(candidates[len(candidates) // 2]))
    return np.asarray(chosen)


def reconstruction_figure(
    validate: SliceSet, recons: dict[str, np.ndarray], out: Path, caption: str
) -> Path:
    """Rows: the original, then each variant; per slice a full view and a zoomed crop."""
    idx = figure_slices(validate, FIGURE_SLICES)
    originals = validate.images[idx].astype(np.float32) / 255.0
    side = validate.size // CROP_FRACTION
    crops = [detailed_crop(img, side) for img in originals]
    rows = [("original", originals)] + [(name, r[idx]) for name, r in recons.items()]
    fig = Figure(figsize=(2.0 * 2 * len(idx), 2.1 * len(rows) + 0.5), layout="constrained")
    fig.suptitle(caption, fontsize=10)
    axes = fig.subplots(len(rows), 2 * len(idx), squeeze=False)
    for r, (name, images) in enumerate(rows):
        for j, (image, (top, left)) in enumerate(zip(images, crops, strict=True)):
            full, zoom = axes[r, 2 * j], axes[r, 2 * j + 1]
            full.imshow(image, cmap="gray", vmin=0, vmax=1)
            full.add_patch(Rectangle((left, top), side, side, fill=False, color="tab:red", lw=1))
            crop = image[top : top + side, left : left + side]
            zoom.imshow(crop, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            for ax in (full, zoom):
                ax.set_xticks([])
                ax.set_yticks([])
            if j == 0:
                full.set_ylabel(name, fontsize=10)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return out


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data source (default: the config's; --quick: demo)")
    parser.add_argument(
        "--config", type=Path, help="base YAML (default: configs/oasis_cpu.yaml; --quick: tiny)"
    )
    parser.add_argument("--minutes", type=float, default=15.0, help="VQ-VAE minutes per variant")
    parser.add_argument("--prior-minutes", type=float, help="prior minutes (default: --minutes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    parser.add_argument("--samples", type=int, default=256, help="slices drawn from each prior")
    parser.add_argument("--start-step", type=int, help="adversarial.start_step (default: config)")
    parser.add_argument("--adv-weight", type=float, help="adversarial.weight (default: config)")
    parser.add_argument("--disc-channels", type=int, help="adversarial.channels")
    parser.add_argument("--freq-weight", type=float, default=0.01, help="frequency_weight")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder")
    parser.add_argument("--figure", type=Path, help="reconstruction figure (default: in --keep)")
    parser.add_argument("--quick", action="store_true", help="a smoke test of under a minute")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.prior_minutes, args.samples = 0.05, 0.05, 16
    config_file = None if args.quick else (args.config or packaged_config("oasis_cpu"))
    overrides = base_overrides(args)
    root = args.keep or Path(tempfile.mkdtemp(prefix="brainvq-gan-"))
    root.mkdir(parents=True, exist_ok=True)
    prior_minutes = args.prior_minutes or args.minutes
    try:
        trained, sliceset = {}, None
        for name, section in variants(args):
            run = root / name.replace("+", "_")
            if run.exists():
                shutil.rmtree(run)
            print(f"training {name} ({args.minutes} + {prior_minutes} min) in {run}", flush=True)
            trained[name] = train_variant(
                run, config_file, merge(overrides, {"adversarial": section})
            )
            trained[name]["run"] = run
        config = next(iter(trained.values()))["config"]
        sliceset = run_slices(config, progress=False)
        classifier = level_classifier(sliceset, config.sample.seed)
        rows, recons = {}, {}
        for name, info in trained.items():
            rows[name], recons[name] = measure(info["run"], info["config"], sliceset, classifier)
        validate = sliceset.require_split("validate")
        precision = resolve_precision(config.vqvae_train)
        header = (
            f"# {machine().describe()}; precision {precision}; data {sliceset.source} "
            f"({sliceset.size}x{sliceset.size}); {args.minutes} min VQ-VAE + {prior_minutes} "
            f"min prior per variant, seed {args.seed}; validate split ({len(validate)} slices); "
            f"{args.samples} samples per prior"
        )
        print("\n" + header)
        adv = to_dict(trained["adversarial"]["config"].adversarial)
        print(
            f"# adversarial: loss {adv['loss']}, start_step {adv['start_step']}, weight "
            f"{adv['weight']}, layers {adv['layers']}, channels {adv['channels']}, spectral_norm "
            f"{adv['spectral_norm']}; +freq: frequency_weight {args.freq_weight}"
        )
        print(
            "\n| variant | VQ-VAE epochs | images/s | SSIM | PSNR (dB) | MAE | recon sharpness "
            "| recon FD | sample FD | level accuracy | sample sharpness |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        )
        for name, row in rows.items():
            info = trained[name]
            print(
                f"| {name} | {info['vqvae_epochs']} | {fmt(info['vqvae_items_per_s'], 4)} | "
                f"{row['ssim']:.4f} | {row['psnr']:.2f} | {row['mae']:.4f} | "
                f"{row['recon_sharpness']:.3f} | {fmt(row['recon_fd'])} | {fmt(row['sample_fd'])} "
                f"| {fmt(row['level_accuracy'], 3)} | {row['sample_sharpness']:.3f} |",
                flush=True,
            )
        figure = args.figure or root / "gan_reconstructions.png"
        caption = (
            f"{sliceset.source} validate slices reconstructed after {args.minutes} min of "
            "VQ-VAE training each; right of each slice: its most detailed quarter, enlarged"
        )
        if not args.quick and "oasis" in sliceset.source.lower():
            caption += "\nData: OASIS-1 (Marcus et al., 2007)"
        print(f"\nfigure: {reconstruction_figure(validate, recons, figure, caption)}")
        if args.keep is None and args.figure is None:
            print("(the figure is deleted with the runs; pass --keep or --figure to keep it)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
