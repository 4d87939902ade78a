"""2D against 3D at equal CPU-minutes: a VQ-VAE of slices with the prior of whole subjects
against a VQ-VAE of volumes with the same prior over its latent levels (docs/volumes.md).

Each kind trains both stages on the same data (`--data`, train -> validate subjects) with the
same minutes (`--minutes` in all, split between the stages as the packaged oasis_3d config
splits them: 12 of 27 to the VQ-VAE), from its packaged config (`oasis_cpu`, `oasis_3d`), one
kind after the other. Then, per kind:

1. Reconstruction of the validate subjects, slice by slice on the axial, coronal and sagittal
   planes (brainvq.evaluation.volume_reconstruction.evaluate_volumes: a 2D model codes each
   slice, a 3D one each volume), and the rate in bits per voxel.
2. Generation (the run's own evaluation, metrics.json `prior`): per-slice Frechet distance and
   level accuracy against real slices, and the adjacent-slice SSIM of generated subjects
   against real subjects'.
3. Seconds per generated subject (drawn and decoded; `--subjects` of them), and the VQ-VAE's
   training rate: items (slices or volumes) and slices per second, from its last epoch.

    .venv/bin/python benchmarks/bench_volumes.py --data ../shared/oasis --out /tmp/vol \\
        --minutes 27
    .venv/bin/python benchmarks/bench_volumes.py --quick --out /tmp/vol_quick

`--quick`: the demo cohort at 32x32 and 16 levels with tiny models for a few seconds a stage, to
check that the script runs, not to measure. Everything is written to OUT/results.json and the
table is printed with the machine and its load (wall time on a shared CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from brainvq.app.pipeline import train_all
from brainvq.app.run_data import run_slices
from brainvq.app.subjects import orthogonal_views, subject_space
from brainvq.data.subject_volumes import subject_volumes
from brainvq.evaluation.volume_reconstruction import evaluate_volumes
from brainvq.hardware import machine
from brainvq.inference.codes import decode_codes, encode_images
from brainvq.inference.generate import generate_subjects
from brainvq.inference.run_models import load_run_models
from brainvq.inference.sampling_options import SamplingOptions
from brainvq.run import RunLayout, prepare_run
from brainvq.run_config import load_run_config

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "brainvq" / "configs"
KINDS = {"2d": "oasis_cpu.yaml", "3d": "oasis_3d.yaml"}
VQVAE_SHARE = 12 / 27  # the VQ-VAE's share of the minutes, as in oasis_3d.yaml
QUICK = {
    "data": {"source": "demo", "size": 32, "n_levels": 16, "demo_subjects": [3, 2, 1]},
    "vqvae": {"channels": [8, 16], "res_blocks": 1, "res_channels": 8, "code_dim": 8},
    "vqvae_train": {"batch_size": 4, "warmup_steps": 2},
    "prior": {"channels": 8, "head_channels": 16, "n_layers": 2, "embed_dim": 8},
    "prior_train": {"batch_size": 8, "warmup_steps": 2},
    "sample": {"n_generation_eval": 0, "keep_rows": 4, "n": 4},
}
PLANES = ("axial", "coronal", "sagittal")


def kind_overrides(data: str, minutes: float, quick: bool) -> dict[str, Any]:
    """What a kind's packaged config is run with: the data, both stages limited to their share
    of `minutes`, and with `quick` the tiny models."""
    overrides: dict[str, Any] = {
        "data": {"source": data},
        "vqvae_train": {"epochs": 10_000, "max_minutes": minutes * VQVAE_SHARE},
        "prior_train": {"epochs": 10_000, "max_minutes": minutes * (1 - VQVAE_SHARE)},
    }
    if quick:
        for section, values in QUICK.items():
            overrides[section] = {**overrides.get(section, {}), **values}
    return overrides


def measure(kind: str, run: Path, subjects: int) -> dict[str, Any]:
    """The rows of one trained run (see the module docstring)."""
    layout = RunLayout(run)
    config = load_run_config(layout.config)
    sliceset = run_slices(config, progress=False)
    models = load_run_models(run)
    recon, _ = evaluate_volumes(models.vqvae, sliceset, "validate", np.arange(0))
    prior = json.loads(layout.metrics.read_text(encoding="utf-8")).get("prior", {})
    start = time.perf_counter()
    generate_subjects(models, subjects, progress=False)
    per_subject = (time.perf_counter() - start) / subjects
    history = json.loads(layout.history("vqvae").read_text(encoding="utf-8"))
    items = history[-1].get("train/items_per_s")
    depth = sliceset.n_levels if kind == "3d" else 1
    return {
        **{f"ssim_{p}": recon["planes"][p]["ssim"] for p in PLANES},
        **{f"psnr_{p}": recon["planes"][p]["psnr"] for p in PLANES},
        "bits_per_voxel": recon["bits_per_voxel"],
        "fd": prior.get("fd"),
        "fd_ceiling": prior.get("fd_ceiling"),
        "level_accuracy": prior.get("level_accuracy"),
        "subject_adjacent_ssim": prior.get("subject_adjacent_ssim"),
        "subject_adjacent_ssim_real": prior.get("subject_adjacent_ssim_real"),
        "seconds_per_subject": per_subject,
        "train_items_per_s": items,
        "train_slices_per_s": None if items is None else items * depth,
        "vqvae_epochs": len(history),
    }


def figure(runs: dict[str, Path], path: Path, seed: int = 0) -> Path:
    """One validate subject and its reconstruction by each kind, then a subject each kind drew:
    every column the middle axial slice above the coronal and sagittal planes through the middle,
    the level axis at its true spacing (brainvq.app.subjects.orthogonal_views)."""
    first = next(iter(runs.values()))
    sliceset = run_slices(load_run_config(RunLayout(first).config), progress=False)
    volumes = subject_volumes(sliceset, "validate")
    real = np.asarray(sliceset.images[volumes.rows[0]])  # (D, H, W) uint8
    stretch = subject_space(first, sliceset.size, 0).stretch
    columns, titles = [real], ["real (validate)"]
    drawn = []
    for kind, run in runs.items():
        models = load_run_models(run)
        model = models.vqvae.model
        if models.dims == 3:
            recon = decode_codes(model, encode_images(model, real[None]))[0]
        else:
            recon = decode_codes(model, encode_images(model, real))
        columns.append(recon)
        titles.append(f"{kind} reconstruction")
        options = SamplingOptions(seed=seed)
        drawn.append(generate_subjects(models, 1, options=options, progress=False)[1][0])
        titles.append(f"{kind} generated")
    columns += drawn
    titles = titles[:1] + titles[1::2] + titles[2::2]
    views = [orthogonal_views(volume, stretch, zoom=2) for volume in columns]
    height, width = views[0].shape
    fig = Figure(figsize=(2.6 * len(views), 2.6 * height / width + 0.6), layout="constrained")
    for ax, view, title in zip(fig.subplots(1, len(views)), views, titles, strict=True):
        ax.imshow(view, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle("axial (middle level), coronal and sagittal planes, levels at true spacing")
    fig.savefig(path, format="png", dpi=110)
    return path


def table(results: dict[str, dict[str, Any]]) -> str:
    kinds = list(results)
    rows = [f"{'row':<28}" + "".join(f"{k:>14}" for k in kinds)]
    for key in results[kinds[0]]:
        cells = []
        for kind in kinds:
            value = results[kind][key]
            cells.append(f"{value:>14.4g}" if isinstance(value, (int, float)) else f"{value!s:>14}")
        rows.append(f"{key:<28}" + "".join(cells))
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/oasis")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=27.0, help="both stages, each kind")
    parser.add_argument("--subjects", type=int, default=4, help="subjects timed per kind")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--quick", action="store_true", help="a tiny demo run: checks, not numbers")
    parser.add_argument(
        "--trained",
        action="store_true",
        help="measure the runs already trained under OUT/<kind> (their training seconds from "
        "their timings.json) instead of training them again",
    )
    args = parser.parse_args()
    minutes = 0.3 if args.quick else args.minutes
    results: dict[str, dict[str, Any]] = {}
    for kind in args.kinds:
        run = args.out / kind
        if args.trained:
            timings = json.loads(RunLayout(run).timings.read_text(encoding="utf-8"))
            seconds = sum(timings.values())
        else:
            overrides = kind_overrides("demo" if args.quick else args.data, minutes, args.quick)
            config = prepare_run(run, CONFIGS / KINDS[kind], overrides)
            start = time.perf_counter()
            train_all(run, config)
            seconds = time.perf_counter() - start
        results[kind] = {"train_all_s": seconds, **measure(kind, run, args.subjects)}
    doc = {
        "machine": machine().describe(),
        "load_average": os.getloadavg(),
        "minutes_each": minutes,
        "quick": args.quick,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    print(f"{doc['machine']}, load {doc['load_average']}, {minutes} minutes each")
    print(table(results))
    runs = {kind: args.out / kind for kind in args.kinds}
    print(f"figure: {figure(runs, args.out / 'volumes_three_planes.png')}")


if __name__ == "__main__":
    main()
