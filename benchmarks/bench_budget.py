"""Quality per CPU minute: train variants of one stage for the same minutes, compare the results.

Each variant is the base config with some keys changed (`NAME:key=value;key=value`, values in
YAML, keys dotted, e.g. `wide:vqvae.channels=[48,96];vqvae.res_channels=48`). Every variant
runs `brainvq train STAGE` in a fresh process with the same data, seed and `--max-minutes`,
one after the other, so they do not share the cores. Prints, per variant: parameters, epochs
trained, images (or code maps) per second, and the stage's metrics from RUN/metrics.json:

- vqvae: SSIM, PSNR and codes used on the evaluation split (test, else validate);
- prior (trained on the codes of `--vqvae-run`, whose VQ-VAE is copied into each variant's
  run): validation NLL in bits per code, level accuracy, Frechet distance, sharpness.

    .venv/bin/python benchmarks/bench_budget.py --stage vqvae --data demo --minutes 3.5 \\
        --variant "w16:vqvae.channels=[16,32];vqvae.res_channels=16" --variant "w32:"
    .venv/bin/python benchmarks/bench_budget.py --stage prior --vqvae-run runs/demo \\
        --minutes 4 --variant "b8:" --variant "b16:prior_train.batch_size=16"
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from brainvq.hardware import machine
from brainvq.run_config import TrainConfig, load_run_config, merge, save_run_config
from brainvq.training.trainer import resolve_precision

VQVAE_COLUMNS = ("ssim", "psnr", "codes_used")
PRIOR_COLUMNS = ("nll_bits_per_code_val", "level_accuracy", "fd", "sharpness_ratio")


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """`NAME:a.b=1;c=[2,3]` -> ("NAME", {"a": {"b": 1}, "c": [2, 3]})."""
    name, _, body = text.partition(":")
    if not name:
        raise ValueError(f"--variant {text!r}: expected NAME:key=value;key=value")
    overrides: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in body.split(";"))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--variant {text!r}: {item!r} is not key=value")
        node = overrides
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = yaml.safe_load(value)
    return name, overrides


def base_document(path: Path | None) -> dict[str, Any]:
    from brainvq.config import to_dict

    return to_dict(load_run_config(path))


def run_variant(
    stage: str, name: str, overrides: dict, args: argparse.Namespace, root: Path
) -> dict[str, Any]:
    run = root / name
    config_file = root / f"{name}.yaml"
    doc = merge(base_document(args.config), overrides)
    if args.data:
        doc = merge(doc, {"data": {"source": args.data}})
    save_run_config(load_run_config(None, doc), config_file)  # validated before it runs
    if stage == "prior":
        run.mkdir(parents=True)
        shutil.copytree(args.vqvae_run / "vqvae" / "VQVAE_Model", run / "vqvae" / "VQVAE_Model")
        shutil.copy(config_file, run / "config.yaml")
    cmd = [sys.executable, "-m", "brainvq.app.cli", "train", stage, "--out", str(run)]
    cmd += ["--config", str(config_file), "--max-minutes", str(args.minutes)]
    cmd += ["--seed", str(args.seed)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace")
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"name": name, "error": tail[:160]}
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))[stage]
    history = json.loads((run / stage / "history.json").read_text(encoding="utf-8"))
    bundle = "VQVAE_Model" if stage == "vqvae" else "PixelCNN_Model"
    meta = json.loads((run / stage / bundle / "config.json").read_text(encoding="utf-8"))
    return {
        "name": name,
        "epochs": len(history),
        "params": meta["meta"].get("parameters"),
        "per_s": meta["meta"].get("train_items_per_s"),
        "wall_s": wall,
        **metrics,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("vqvae", "prior"), default="vqvae")
    parser.add_argument("--data", help="data source (default: the config's)")
    parser.add_argument("--config", type=Path, help="base YAML (default: brainvq's defaults)")
    parser.add_argument("--vqvae-run", type=Path, help="prior: the run whose VQ-VAE to use")
    parser.add_argument("--minutes", type=float, default=3.5, help="training budget per variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    parser.add_argument("--variant", action="append", required=True, help="NAME:key=value;...")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder")
    args = parser.parse_args(argv)
    if args.stage == "prior" and args.vqvae_run is None:
        print("--stage prior needs --vqvae-run RUN (a run with a trained VQ-VAE)", file=sys.stderr)
        return 2
    try:
        variants = [parse_variant(v) for v in args.variant]
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    precision = resolve_precision(TrainConfig())
    print(
        f"# {machine().describe()}; precision {precision}; {args.stage}, "
        f"{args.minutes} min per variant, seed {args.seed}"
    )
    root = args.keep or Path(tempfile.mkdtemp(prefix="brainvq-budget-"))
    columns = VQVAE_COLUMNS if args.stage == "vqvae" else PRIOR_COLUMNS
    print(
        "\n| variant | changes | parameters | epochs | items/s | "
        + " | ".join(columns)
        + " |\n| --- | --- | ---: | ---: | ---: | "
        + " | ".join("---:" for _ in columns)
        + " |"
    )
    try:
        for (name, overrides), text in zip(variants, args.variant, strict=True):
            row = run_variant(args.stage, name, overrides, args, root)
            changes = text.partition(":")[2] or "(base)"
            if "error" in row:
                print(f"| {name} | {changes} | failed: {row['error']} |", flush=True)
                continue
            values = " | ".join("-" if row.get(c) is None else f"{row[c]:.4g}" for c in columns)
            per_s = "-" if row["per_s"] is None else f"{row['per_s']:.1f}"
            print(
                f"| {name} | {changes} | {row['params'] or '-'} | {row['epochs']} | {per_s} | "
                f"{values} |",
                flush=True,
            )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
