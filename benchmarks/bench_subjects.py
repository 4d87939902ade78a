"""Whole subjects: a prior that knows the slice below against today's, at equal training minutes.

On the code maps of one VQ-VAE (`--vqvae-run`, a run with a trained VQ-VAE; its data source is
the run's), priors are trained for the same `--minutes` (or `--epochs`), one after the other:
`none` (each slice on its own, today's prior) and `previous` (the slice below attached,
`prior: {neighbour: previous}`). Then, with `--subjects S` generated subjects each:

1. NLL in bits per code on the validate code maps: `none`; `previous` given the slice below, and
   the same prior never shown it; the minutes `previous` took to pass `none`'s final NLL.
2. Consistency (brainvq.evaluation.consistency): the adjacent-slice SSIM of generated subjects,
   of independent per-level slices from `none` (the floor: today's `--levels all`), of real
   validate and of real training subjects; the Wasserstein distance of each distribution to
   the real validate subjects' (real training subjects: the ceiling); and the share of adjacent
   pairs a same-subject classifier, trained on the real training subjects, calls one subject
   (its accuracy on held-out real validate pairs of both kinds says how far it can be read).
3. Per-slice quality of the S x L slices of each set, and of S x L single slices drawn from
   each prior that knows the slice below without it (`<prior> alone`: what `sample --n`
   draws), against real reference slices
   (brainvq.evaluation.generation_metrics): Frechet distance in the level classifier's
   features, level accuracy, sharpness.
4. Speed of one subject of L slices: the wavefront sampler (1 and 2 threads), the cached
   sampler slice by slice, the naive reference (timed on `--naive-slices` slices, scaled to L).
5. A figure (`--figure`): a generated subject, independent slices and a real validate subject
   in three planes.

    .venv/bin/python benchmarks/bench_subjects.py --vqvae-run /tmp/oasis --out /tmp/subj \\
        --minutes 6 --variants none previous previous_noise --figure docs/subjects_oasis.png

`--variants` names the priors (VARIANTS: `previous_noise` also redraws 20% of the codes below
in training, `prior: {neighbour_noise: 0.2}`); `--figure-only` redraws the figure from priors
trained before.

Everything is written to OUT/results.json; the tables are printed with the machine and its
load (the CPU is shared: every time is wall time on a machine others may be using).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainvq.app.run_data import run_slices
from brainvq.app.subjects import subject_space
from brainvq.evaluation.consistency import (
    adjacent_ssim,
    pair_check,
    same_subject_share,
    ssim_distance,
    subject_volumes,
    train_pair_classifier,
)
from brainvq.evaluation.generation_metrics import generation_report
from brainvq.evaluation.level_classifier import train_level_classifier
from brainvq.evaluation.prior import code_nll_bits, reference_sets
from brainvq.hardware import machine
from brainvq.inference.codes import load_codes
from brainvq.inference.generate import generate_slices, generate_subjects
from brainvq.inference.run_models import load_run_models
from brainvq.inference.sampling import sample
from brainvq.inference.sampling_options import SamplingOptions
from brainvq.models.level_classifier import LevelClassifierConfig
from brainvq.models.pair_classifier import PairClassifierConfig
from brainvq.report.plots import plot_subject_planes
from brainvq.run import RunLayout, load_run
from brainvq.run_config import SampleConfig, save_run_config
from brainvq.training.fit_prior import fit_prior

# variant -> its prior section; every variant but `none` knows the slice below
VARIANTS = {
    "none": {"neighbour": "none"},
    "previous": {"neighbour": "previous"},
    "previous_noise": {"neighbour": "previous", "neighbour_noise": 0.2},
    # half the maps shown without their slice below: a prior meant to judge a slice alone too
    "previous_noise_drop50": {
        "neighbour": "previous",
        "neighbour_noise": 0.2,
        "neighbour_dropout": 0.5,
    },
}


def load_average() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def prepare(args: argparse.Namespace, name: str) -> Path:
    """OUT/<name>: the VQ-VAE run's config with the variant's prior, its VQ-VAE, and the code
    maps when another variant already encoded them."""
    run = args.out / name
    if (run / "prior" / "PixelCNN_Model").is_dir():
        return run
    run.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        RunLayout(args.vqvae_run).bundle("vqvae"),
        RunLayout(run).bundle("vqvae"),
        dirs_exist_ok=True,
    )
    for other in VARIANTS:
        codes = RunLayout(args.out / other).codes
        if other != name and (codes / "index.json").is_file() and not RunLayout(run).codes.exists():
            shutil.copytree(codes, RunLayout(run).codes)
    overrides = {
        "prior": VARIANTS[name],
        "prior_train": (
            {"max_minutes": 10**4, "epochs": args.epochs, "seed": args.seed}
            if args.epochs
            else {"max_minutes": args.minutes, "epochs": 1000, "seed": args.seed}
        ),
    }
    save_run_config(load_run(args.vqvae_run, overrides), RunLayout(run).config)
    return run


def train(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    sliceset = run_slices(load_run(args.vqvae_run), progress=False)
    for name in args.variants:
        run = prepare(args, name)
        if not (run / "prior" / "PixelCNN_Model").is_dir():
            start, load = time.perf_counter(), load_average()
            fit_prior(run, load_run(run), sliceset, progress_bar=False)
            seconds = time.perf_counter() - start
            (run / "train_seconds.json").write_text(json.dumps({"s": seconds, "load": load}))
        info = json.loads((run / "train_seconds.json").read_text(encoding="utf-8"))
        history = json.loads(RunLayout(run).history("prior").read_text(encoding="utf-8"))
        out[name] = {
            "train_s": info["s"],
            "load_at_start": info["load"],
            "epochs": len(history),
            "val_nll_by_epoch": [row.get("val/nll_bits") for row in history],
        }
    return out


def nll(args: argparse.Namespace, trained: dict[str, Any]) -> dict[str, Any]:
    result = {}
    for name in args.variants:
        run = args.out / name
        bundle = load_run_models(run).prior
        validate = load_codes(RunLayout(run).codes, "validate")
        result[name] = code_nll_bits(bundle, validate)
        if name != "none":
            result[f"{name}_alone"] = code_nll_bits(bundle, validate, neighbour=False)
            # epochs until it passed `none`'s final validation NLL (validated once an epoch)
            target = trained["none"]["val_nll_by_epoch"][-1]
            curve = trained[name]["val_nll_by_epoch"]
            passed = [i + 1 for i, v in enumerate(curve) if v is not None and v <= target]
            result[f"{name}_epochs_to_pass_none"] = passed[0] if passed else None
    return result


def speed(models, n_levels: int, naive_slices: int) -> dict[str, Any]:
    prior = models.prior.model
    out: dict[str, Any] = {"load_before": load_average()}
    for sampler, threads in (("wavefront", 1), ("wavefront", 2), ("cached", 1)):
        start = time.perf_counter()
        options = SamplingOptions(sampler=sampler)
        generate_subjects(models, 1, options=options, threads=threads, progress=False)
        out[f"{sampler}_{threads}t_s"] = time.perf_counter() - start
    h, w = models.latent_hw
    start = time.perf_counter()
    below = None
    for k in range(naive_slices):
        below = sample(prior, 1, (h, w), level=k, below=below, sampler="naive", threads=1)
    out["naive_s_per_slice"] = (time.perf_counter() - start) / naive_slices
    out["naive_subject_s_estimate"] = out["naive_s_per_slice"] * n_levels
    out["load_after"] = load_average()
    return out


def measure(args: argparse.Namespace, trained: dict[str, Any]) -> dict[str, Any]:
    config = load_run(args.vqvae_run)
    sliceset = run_slices(config, progress=False)
    n_levels = int(sliceset.n_levels)
    train_set, validate = sliceset.require_split("train"), sliceset.require_split("validate")
    real_train = subject_volumes(train_set.images, train_set.subject, train_set.level, n_levels)
    real_val = subject_volumes(validate.images, validate.subject, validate.level, n_levels)
    s, seed = args.subjects, args.seed
    seeded = SamplingOptions(seed=seed)
    models = {name: load_run_models(args.out / name) for name in args.variants}
    sets, gen_s = {}, {}
    for name in args.variants[1:]:
        start = time.perf_counter()
        _, sets[name], _ = generate_subjects(models[name], s, options=seeded, progress=False)
        gen_s[name] = time.perf_counter() - start
    levels = np.tile(np.arange(n_levels), s)  # independent slices: every level s times
    _, flat = generate_slices(models["none"], s * n_levels, levels, options=seeded, progress=False)
    independent = flat.reshape(s, n_levels, *flat.shape[1:])  # (S, L, H, W)
    sets.update({"independent (none)": independent, "real validate": real_val})
    singles = []  # what `sample --n` draws from a prior of whole subjects: slices alone
    for name in args.variants[1:]:
        _, flat = generate_slices(
            models[name], s * n_levels, levels, options=seeded, progress=False
        )
        sets[f"{name} alone"] = flat.reshape(s, n_levels, *flat.shape[1:])
        singles.append(f"{name} alone")
    sets["real train"] = real_train
    ssim = {k: adjacent_ssim(v) for k, v in sets.items()}
    consistency = {
        k: {
            "adjacent_ssim_mean": float(v.mean()),
            "adjacent_ssim_median": float(np.median(v)),
            "distance_to_real_validate": ssim_distance(v, ssim["real validate"]),
        }
        for k, v in ssim.items()
    }
    pair_config = PairClassifierConfig(image_size=min(64, sliceset.size), seed=seed)
    pair_model = train_pair_classifier(real_train, pair_config, progress=False)
    check = pair_check(pair_model, real_val, seed) if len(real_val) >= 2 else None
    for k in sets:
        if k != "real train" and k not in singles:
            consistency[k]["same_subject_share"] = same_subject_share(pair_model, sets[k])
    level_model = train_level_classifier(
        train_set.images,
        train_set.level,
        LevelClassifierConfig(
            image_size=min(64, sliceset.size),
            n_levels=n_levels,
            epochs=max(4, math.ceil(SampleConfig().classifier_presentations / len(train_set))),
            seed=seed,
        ),
        progress=False,
    )
    n = s * n_levels
    refs = reference_sets(sliceset, n, seed)
    quality = {}
    for k in [*args.variants[1:], "independent (none)", *singles]:
        report = generation_report(
            level_model,
            sets[k].reshape(n, *sets[k].shape[2:]),
            levels,
            refs.test.images,
            refs.test.level,
            refs.validate.images,
            train_set.images,
            refs.validate.images,  # the floor is not reported here
        )
        quality[k] = {
            key: report[key] for key in ("fd", "fd_ceiling", "level_accuracy", "sharpness_ratio")
        }
        quality[k]["level_accuracy_real"] = report["level_accuracy_real"]
    timing = speed(models[args.variants[1]], n_levels, args.naive_slices)
    timing[f"wavefront_{s}_subjects_s"] = gen_s
    if args.figure:
        shown = {k: v[0] for k, v in sets.items() if k != "real train" and k not in singles}
        draw_figure(args, shown)
    return {
        "subjects": s,
        "real_subjects": {"train": len(real_train), "validate": len(real_val)},
        "reference_split": refs.split,
        "consistency": consistency,
        "pair_classifier_check": check,
        "quality": quality,
        "speed": timing,
    }


def draw_figure(args: argparse.Namespace, volumes: dict[str, np.ndarray]) -> None:
    """The first generated subject of every prior that knows the slice below, an independent
    stack of `none`'s slices and a real validate subject, in three planes (--figure)."""
    size = next(iter(volumes.values())).shape[-1]
    stretch = subject_space(args.out / args.variants[1], size, 0).stretch
    rows = [(f"generated\n({k})", v) for k, v in volumes.items() if k in VARIANTS]
    rows += [
        ("independent\nslices (none)", volumes["independent (none)"]),
        ("real subject\n(validate)", volumes["real validate"]),
    ]
    plot_subject_planes(rows, stretch, args.figure)


def figure_only(args: argparse.Namespace) -> None:
    """--figure-only: the figure from the priors trained before, one subject of each."""
    sliceset = run_slices(load_run(args.vqvae_run), progress=False)
    n_levels = int(sliceset.n_levels)
    validate = sliceset.require_split("validate")
    real = subject_volumes(validate.images, validate.subject, validate.level, n_levels)
    volumes, seeded = {}, SamplingOptions(seed=args.seed)
    for name in args.variants[1:]:
        models = load_run_models(args.out / name)
        volumes[name] = generate_subjects(models, 1, options=seeded, progress=False)[1][0]
    levels = np.arange(n_levels)
    none = load_run_models(args.out / "none")
    volumes["independent (none)"] = generate_slices(
        none, n_levels, levels, options=seeded, progress=False
    )[1]
    volumes["real validate"] = real[0]
    draw_figure(args, volumes)


def print_tables(result: dict[str, Any]) -> None:
    print(f"# {result['machine']}; load (1/5/15 min) at the end {result['load_end']}")
    t, nl = result["trained"], result["nll"]
    budget = f"{result['epochs']} epochs" if result.get("epochs") else f"{result['minutes']} min"
    print(f"\nNLL, bits per code on the validate code maps ({budget} per prior)")
    print("| prior | epochs | train s | val NLL | without the slice below | epochs to pass none |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, row in t.items():
        alone = nl.get(f"{name}_alone")
        passed = nl.get(f"{name}_epochs_to_pass_none")
        print(
            f"| {name} | {row['epochs']} | {row['train_s']:.0f} | {nl[name]:.3f} | "
            f"{'-' if alone is None else f'{alone:.3f}'} | {'-' if passed is None else passed} |"
        )
    m = result["measure"]
    c = m["consistency"]
    print(f"\nConsistency ({m['subjects']} generated subjects; real: {m['real_subjects']})")
    print("| set | adjacent SSIM mean | median | W1 to real validate | same-subject share |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for k, v in c.items():
        share = v.get("same_subject_share")
        share = "-" if share is None else f"{share:.3f}"
        print(
            f"| {k} | {v['adjacent_ssim_mean']:.3f} | {v['adjacent_ssim_median']:.3f} | "
            f"{v['distance_to_real_validate']:.4f} | {share} |"
        )
    print(f"pair classifier on held-out real validate pairs: {m['pair_classifier_check']}")
    print(f"\nPer-slice quality (reference: {m['reference_split']})")
    print("| set | FD | FD ceiling | level accuracy | real | sharpness |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for k, v in m["quality"].items():
        print(
            f"| {k} | {v['fd']:.2f} | {v['fd_ceiling']:.2f} | {v['level_accuracy']:.3f} | "
            f"{v['level_accuracy_real']:.3f} | {v['sharpness_ratio']:.3f} |"
        )
    print(f"\nSpeed of one subject: {json.dumps(m['speed'], indent=None)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vqvae-run", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument(
        "--epochs",
        type=int,
        help="train each prior this many epochs instead of --minutes (a budget that a shared "
        "CPU does not shrink; the table still gives each prior's seconds)",
    )
    parser.add_argument("--subjects", type=int, default=16)
    parser.add_argument("--naive-slices", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["none", "previous"],
        choices=list(VARIANTS),
        help="priors to train and compare; `none` first, the first other one is timed and drawn",
    )
    parser.add_argument(
        "--figure-only",
        action="store_true",
        help="only draw --figure from the priors already trained under --out",
    )
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    if args.figure_only:
        figure_only(args)
        return 0
    result: dict[str, Any] = {
        "machine": machine().describe(),
        "minutes": args.minutes,
        "epochs": args.epochs,
    }
    result["trained"] = train(args)
    result["nll"] = nll(args, result["trained"])
    result["measure"] = measure(args, result["trained"])
    result["load_end"] = load_average()
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    print_tables(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
