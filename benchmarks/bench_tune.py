"""Does tuning pay at a fixed CPU budget? A study of each stage, then the base config and the
study's best.yaml trained for the same minutes, validated side by side.

For each stage asked (`--stage vqvae|prior|both`), in order, one after the other so they never
share the cores:

1. vqvae: `brainvq tune --stage vqvae` for `--study-minutes` of `--trial-minutes` trials
   (RUN/tune/ in ROOT/tune_vqvae); then `brainvq train vqvae` from the base config
   (ROOT/base) and from the study's best.yaml (ROOT/tuned), each for `--final-minutes`
   (default: the base config's vqvae_train.max_minutes). Table: SSIM and PSNR of both runs
   (metrics.json: the test split, else validate), epochs, and the study's best and baseline
   trial (the base config's values at the trial budget).
2. prior, on the codes of ROOT/base's VQ-VAE (or --vqvae-run's): `brainvq tune --stage prior
   --vqvae-run ROOT/base` (ROOT/tune_prior), then `brainvq train prior` in ROOT/base_prior
   (the base config) and ROOT/tuned_prior (the prior study's best.yaml), each with a copy of
   that VQ-VAE, for `--final-minutes` (default: prior_train.max_minutes).
   Table: validation NLL in bits per code and level accuracy.

Every command runs in this process through `brainvq.app.cli.main`, exactly as typed on the
command line. On the OASIS copy in ../shared/oasis (no test split) the tuned configs are
chosen on the same validate split they are then measured on: their advantage there is
optimistic by that selection, which the output says.

    .venv/bin/python benchmarks/bench_tune.py --data ../shared/oasis \\
        --config configs/oasis_cpu.yaml --study-minutes 60 --trial-minutes 3 --out runs/bench_tune
    .venv/bin/python benchmarks/bench_tune.py --quick     # smoke test on the demo, ~1 minute
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from brainvq.app.cli import main as cli
from brainvq.config import to_dict
from brainvq.hardware import machine
from brainvq.run import RunLayout, packaged_config
from brainvq.run_config import TrainConfig, load_run_config, merge
from brainvq.training.trainer import resolve_precision

# --quick: a demo cohort and models small enough for a study of seconds-long trials
QUICK = {
    "data": {"source": "demo", "size": 32, "demo_subjects": [3, 1, 1]},
    "vqvae": {"channels": [8, 16], "res_blocks": 1, "res_channels": 8, "code_dim": 8},
    "vqvae_train": {"epochs": 2, "warmup_steps": 2},
    "prior": {"embed_dim": 8, "channels": 8, "n_layers": 2, "head_channels": 16},
    "prior_train": {"epochs": 2, "warmup_steps": 2},
    "sample": {
        "n": 4,
        "per_level": 1,
        "n_levels_shown": 4,
        "keep_rows": 4,
        "n_generation_eval": 16,
    },
}


def run(args: list[str]) -> None:
    print("$ brainvq " + " ".join(args), flush=True)
    code = cli(args)
    if code != 0:
        raise SystemExit(f"`brainvq {' '.join(args)}` failed with exit code {code}")


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def tune(stage: str, out: Path, opts: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    run(
        [
            "tune",
            "--stage",
            stage,
            "--out",
            str(out),
            "--trials",
            str(opts.trials),
            "--trial-minutes",
            str(opts.trial_minutes),
            "--max-minutes",
            str(opts.study_minutes),
            "--seed",
            str(opts.seed),
            *extra,
        ]
    )
    return read(RunLayout(out).tune_summary)


def train(stage: str, out: Path, config: Path, minutes: float, opts: argparse.Namespace) -> None:
    args = ["train", stage, "--out", str(out), "--config", str(config)]
    run([*args, "--max-minutes", str(minutes), "--seed", str(opts.seed)])


def changed(best_yaml: Path, base: Path, stage: str) -> str:
    """The keys of `stage` whose value best.yaml changed: `key: base -> best`."""
    sections = ("vqvae", "vqvae_train") if stage == "vqvae" else ("prior", "prior_train")
    a, b = to_dict(load_run_config(base)), to_dict(load_run_config(best_yaml))
    diffs = [
        f"{s}.{k}: {a[s][k]} -> {b[s][k]}" for s in sections for k in a[s] if a[s][k] != b[s][k]
    ]
    return "; ".join(diffs) or "(the base values)"


def trials_text(summary: dict[str, Any]) -> str:
    c = summary["counts"]
    return f"{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed"


def _f(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def bench_vqvae(root: Path, base: Path, opts: argparse.Namespace) -> Path:
    summary = tune("vqvae", root / "tune_vqvae", opts, ["--config", str(base)])
    best_yaml = RunLayout(root / "tune_vqvae").tune_best
    minutes = opts.final_minutes or load_run_config(base).vqvae_train.max_minutes
    train("vqvae", root / "base", base, minutes, opts)
    train("vqvae", root / "tuned", best_yaml, minutes, opts)
    rows = []
    for name, run_dir in (("base config", root / "base"), ("tuned (best.yaml)", root / "tuned")):
        metrics = read(RunLayout(run_dir).metrics)["vqvae"]
        epochs = len(read(RunLayout(run_dir).history("vqvae")))
        rows.append((name, metrics, epochs))
    split = rows[0][1]["split"]
    print(
        f"\n## VQ-VAE: study of {opts.study_minutes:g} min, {opts.trial_minutes:g}-minute trials "
        f"({trials_text(summary)}); final runs {minutes:g} min each\n"
    )
    print(f"| config | {split} SSIM | {split} PSNR (dB) | epochs |")
    print("| --- | ---: | ---: | ---: |")
    for name, metrics, epochs in rows:
        print(f"| {name} | {_f(metrics['ssim'])} | {_f(metrics['psnr'], 2)} | {epochs} |")
    baseline, best = summary.get("baseline") or {}, summary.get("best") or {}
    print(
        f"\nstudy: best trial {best.get('number', '-')} val/ssim {_f(best.get('value'))}; "
        f"baseline trial (the base config's values) {_f(baseline.get('value'))}, at "
        f"{opts.trial_minutes:g} minutes"
    )
    print(f"tuned values: {changed(best_yaml, base, 'vqvae')}")
    if split == "validate":
        print("note: selected and measured on the validate split (no test split): optimistic")
    return root / "base"


def bench_prior(root: Path, vqvae_run: Path, opts: argparse.Namespace) -> None:
    summary = tune("prior", root / "tune_prior", opts, ["--vqvae-run", str(vqvae_run)])
    best_yaml = RunLayout(root / "tune_prior").tune_best
    base = RunLayout(vqvae_run).config
    minutes = opts.final_minutes or load_run_config(base).prior_train.max_minutes
    runs = {"base config": (RunLayout(root / "base_prior"), base)}
    runs["tuned (best.yaml)"] = (RunLayout(root / "tuned_prior"), best_yaml)
    for layout, config in runs.values():  # the same VQ-VAE, copied (the VQ-VAE run is kept)
        layout.root.mkdir(parents=True, exist_ok=True)
        shutil.copytree(RunLayout(vqvae_run).bundle("vqvae"), layout.bundle("vqvae"))
        shutil.copy(config, layout.config)
        train("prior", layout.root, config, minutes, opts)
    print(
        f"\n## Prior (on the base VQ-VAE's codes): study of {opts.study_minutes:g} min, "
        f"{opts.trial_minutes:g}-minute trials ({trials_text(summary)}); final runs "
        f"{minutes:g} min each\n"
    )
    print("| config | validate NLL (bits per code) | level accuracy | epochs |")
    print("| --- | ---: | ---: | ---: |")
    for name, (layout, _) in runs.items():
        metrics = read(layout.metrics)["prior"]
        epochs = len(read(layout.history("prior")))
        print(
            f"| {name} | {_f(metrics.get('nll_bits_per_code_val'))} | "
            f"{_f(metrics.get('level_accuracy'), 3)} | {epochs} |"
        )
    baseline, best = summary.get("baseline") or {}, summary.get("best") or {}
    print(
        f"\nstudy: best trial {best.get('number', '-')} val/nll_bits {_f(best.get('value'))}; "
        f"baseline trial {_f(baseline.get('value'))}, at {opts.trial_minutes:g} minutes"
    )
    print(f"tuned values: {changed(best_yaml, base, 'prior')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("vqvae", "prior", "both"), default="both")
    parser.add_argument("--data", default="../shared/oasis")
    parser.add_argument("--config", type=Path, default=Path("configs/oasis_cpu.yaml"))
    parser.add_argument("--study-minutes", type=float, default=60.0)
    parser.add_argument("--trial-minutes", type=float, default=3.0)
    parser.add_argument("--trials", type=int, default=1000, help="a cap; the minutes decide")
    parser.add_argument("--final-minutes", type=float, help="default: the config's budgets")
    parser.add_argument("--vqvae-run", type=Path, help="--stage prior: the VQ-VAE run to use")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="keep every run here (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="a smoke run on the demo cohort")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.data, opts.study_minutes, opts.trial_minutes = "demo", 0.15, 0.03
        opts.final_minutes = opts.final_minutes or 0.03
    if opts.stage == "prior" and opts.vqvae_run is None:
        parser.error("--stage prior needs --vqvae-run RUN (a run with a trained VQ-VAE)")
    root = opts.out or Path(tempfile.mkdtemp(prefix="brainvq-bench-tune-"))
    root.mkdir(parents=True, exist_ok=True)
    doc = yaml.safe_load(opts.config.read_text(encoding="utf-8")) if not opts.quick else {}
    if opts.quick:
        doc = merge(yaml.safe_load(packaged_config("quick").read_text(encoding="utf-8")), QUICK)
    base = root / "base.yaml"  # the base config with the data source, as every run gets it
    base.write_text(yaml.safe_dump(merge(doc, {"data": {"source": opts.data}})))
    print(
        f"# {machine().describe()}; precision {resolve_precision(TrainConfig())}; data "
        f"{opts.data}; base config {opts.config if not opts.quick else 'quick (demo)'}; seed "
        f"{opts.seed}; runs in {root}"
    )
    start = time.perf_counter()
    try:
        vqvae_run = opts.vqvae_run
        if opts.stage in ("vqvae", "both"):
            vqvae_run = bench_vqvae(root, base, opts)
        if opts.stage in ("prior", "both"):
            bench_prior(root, vqvae_run, opts)
        print(f"\nbenchmark wall time: {(time.perf_counter() - start) / 60:.1f} min")
    finally:
        if opts.out is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
