"""Where a training step's time goes on this CPU, and what the thread, allocator, layout and
compiler settings change.

For the VQ-VAE and the prior of a run config (default: the packaged demo config), each at its
config's batch size, on demo-like inputs held in memory:

1. a profile of `--steps` training steps (forward, the trainer's loss, backward, clipping,
   AdamW): the share of self CPU time per kind of op (convolution forward, convolution
   backward, matrix products, element-wise, reductions, copies and layout changes, embedding,
   optimiser, other), and user vs system CPU time and minor page faults of the steps;
   Then the step's wall time by phase and by part of the model (training_phases.py);
2. variants, each in a fresh process (so that environment variables read at start-up apply):
   intra-op threads 1 vs all cores; OpenMP wait policy passive vs active; the allocator (glibc
   as it is, glibc without trimming or mmap for big blocks, jemalloc or tcmalloc when installed);
   contiguous vs channels_last; torch.compile (inductor), with its compile time;
3. the data path: seconds per epoch spent drawing batches from brainvq's data loader;
4. with --fit-steps N: a real fit of N steps per stage (Lightning, loggers, checkpoints,
   validation): ms per step inside Lightning against the bare step, and the validation epoch.

Every number is this machine's: the header names the CPU, its vector ISA, threads, torch and
the precision.

    .venv/bin/python benchmarks/profile_training.py [--config demo] [--steps 20]
        [--stage vqvae|prior|both] [--precision auto|32|bf16-mixed] [--skip-variants]
        [--threads N] [--fit-steps 0] [--variants threads,omp,malloc,layout,compile] [--repeats 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from training_phases import WARMUP, fit_times, phase_times, profile_shares

from brainvq.hardware import keep_freed_memory, machine, usable_cores
from brainvq.run_config import PRECISIONS, RunConfig, TrainConfig, load_run_config
from brainvq.training.trainer import resolve_precision

SEED = 0


class Step(NamedTuple):
    """A training step to call, and its phase timing (training_phases.phase_times)."""

    run: Callable[[], None]
    phases: Callable[[int], dict[str, float]]


MALLOC_LIBRARIES = {
    "jemalloc": (
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
        "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    ),
    "tcmalloc": (
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
        "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    ),
}
# glibc: never give memory back at free, never mmap big blocks (each new one page-faults)
GLIBC_KEEP = {"MALLOC_TRIM_THRESHOLD_": str(2**40), "MALLOC_MMAP_THRESHOLD_": str(2**40)}


def build_step(stage: str, config: RunConfig, precision: str) -> Step:
    """One training step of `stage` as the trainer runs it, on fixed demo-like inputs."""
    torch.manual_seed(SEED)
    dtype = torch.bfloat16 if precision == "bf16-mixed" else None
    if stage == "vqvae":
        from brainvq.training.vqvae_module import VQVAEModule

        module = VQVAEModule(config.vqvae, config.vqvae_train)
        cfg = config.vqvae_train
        size = config.data.size
        x = torch.rand(cfg.batch_size, 1, size, size)  # the step's cost does not depend on data

        def loss() -> torch.Tensor:
            return module.losses(x)[0]["loss"]

    else:
        from brainvq.training.prior_module import PriorModule

        cfg = config.prior_train
        side = config.data.size // config.vqvae.downsample
        prior = dataclasses.replace(
            config.prior, codebook_size=config.vqvae.codebook_size, n_levels=32, map_size=side
        )
        module = PriorModule(prior, cfg)
        codes = torch.randint(0, prior.codebook_size, (cfg.batch_size, side, side))
        levels = torch.randint(0, 32, (cfg.batch_size,))
        # the slice below, for a prior of whole subjects: another map, as the loader pairs them
        batch = (codes, levels, codes.roll(1, 0)) if prior.has_neighbour else (codes, levels)

        def loss() -> torch.Tensor:
            return module._nll_nats(batch)

    module.train()
    params = list(module.model.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if os.environ.get("BRAINVQ_PROFILE_COMPILE") == "1":
        module.model = torch.compile(module.model)

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            value = loss()
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if cfg.gradient_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.gradient_clip)
        optimizer.step()

    def phases(steps: int) -> dict[str, float]:
        return phase_times(stage, module.model, loss, optimizer, cfg.gradient_clip, dtype, steps)

    return Step(step, phases)


def timed_steps(step: Callable[[], None], steps: int) -> dict[str, float]:
    """ms per step (median of single steps), CPU ms per step, user and system CPU s per wall
    s, minor faults per step."""
    times = []
    before, usage = os.times(), resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    after, usage_after = os.times(), resource.getrusage(resource.RUSAGE_SELF)
    wall = sum(times)
    return {
        "ms": 1000 * statistics.median(times),
        "cpu_ms": 1000 * (after.user + after.system - before.user - before.system) / steps,
        "user": (after.user - before.user) / wall,
        "sys": (after.system - before.system) / wall,
        "faults": (usage_after.ru_minflt - usage.ru_minflt) / steps,
    }


def worker(spec: dict) -> dict:
    """Run in a fresh process: build the step, warm up (and compile), time it."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if spec.get("keep"):
        keep_freed_memory()
    config = load_run_config(spec["config"])
    if spec.get("channels_last") is not None:
        for train in (config.vqvae_train, config.prior_train):
            train.channels_last = spec["channels_last"]
    step = build_step(spec["stage"], config, spec["precision"]).run
    start = time.perf_counter()
    step()  # the first step includes k-means init (VQ-VAE) and, compiled, the compilation
    first_s = time.perf_counter() - start
    for _ in range(WARMUP):
        step()
    return {**timed_steps(step, spec["steps"]), "first_s": first_s}


def run_variant(spec: dict, env: dict[str, str]) -> dict | str:
    """The worker in a subprocess with `env` added; its result, or why it failed."""
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    proc = subprocess.run(
        cmd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=1800,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return (proc.stderr.strip().splitlines() or ["no output"])[-1][:120]
    return json.loads(lines[-1])


def data_path_seconds(config: RunConfig):
    """The config's slices, the seconds to draw one epoch of training batches from brainvq's
    loader, and the batches."""
    from brainvq.data import load_slices
    from brainvq.data.dataset import SliceDataModule

    d = config.data
    sliceset = load_slices(
        d.source, size=d.size, demo_subjects=tuple(d.demo_subjects), progress=False
    )
    loader = SliceDataModule(sliceset, batch_size=config.vqvae_train.batch_size).train_dataloader()
    start = time.perf_counter()
    n = sum(1 for _ in loader)
    return sliceset, time.perf_counter() - start, n


def variants(selected: set[str]) -> list[tuple[str, str, dict, dict[str, str]]]:
    """(group, label, spec overrides, environment) of every variant to run."""
    cores = usable_cores()
    out = [("baseline", f"{cores} threads, glibc as it is, config layout, eager", {}, {})]
    if "threads" in selected and cores > 1:
        out.append(("threads", "1 intra-op thread", {"threads": 1}, {}))
    if "omp" in selected:
        out.append(("omp", "OMP_WAIT_POLICY=PASSIVE", {}, {"OMP_WAIT_POLICY": "PASSIVE"}))
        out.append(("omp", "OMP_WAIT_POLICY=ACTIVE", {}, {"OMP_WAIT_POLICY": "ACTIVE"}))
    if "malloc" in selected:
        out.append(("malloc", "glibc, no trim / mmap (env)", {}, GLIBC_KEEP))
        out.append(("malloc", "keep_freed_memory() (brainvq's default)", {"keep": True}, {}))
        for name, paths in MALLOC_LIBRARIES.items():
            found = next((p for p in paths if Path(p).is_file()), None)
            if found:
                out.append(("malloc", name, {}, {"LD_PRELOAD": found}))
    if "layout" in selected:
        out.append(("layout", "contiguous", {"channels_last": False}, {}))
        out.append(("layout", "channels_last", {"channels_last": True}, {}))
    if "compile" in selected:
        out.append(("compile", "torch.compile (inductor)", {}, {"BRAINVQ_PROFILE_COMPILE": "1"}))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="demo", help="packaged config name or YAML path")
    parser.add_argument("--stage", default="both", choices=("vqvae", "prior", "both"))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--skip-variants", action="store_true", help="profile and data path only")
    parser.add_argument(
        "--threads", type=int, help="torch intra-op threads (default: one per usable core)"
    )
    parser.add_argument(
        "--fit-steps", type=int, default=0, help="also time a real fit of this many steps"
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each variant (median)")
    parser.add_argument(
        "--variants",
        default="threads,omp,malloc,layout,compile",
        help="comma-separated groups: threads, omp, malloc, layout, compile",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def config_path(name_or_path: str) -> Path:
    from brainvq.run import packaged_config

    path = Path(name_or_path)
    return path if path.is_file() else packaged_config(name_or_path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.steps < 1:
        print(f"--steps must be >= 1, got {args.steps}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    path = config_path(args.config)
    config = load_run_config(path)
    precision = resolve_precision(TrainConfig(precision=args.precision, accelerator="cpu"))
    print(f"# {machine().describe()}; precision {precision}; config {path.name}")
    stages = ("vqvae", "prior") if args.stage == "both" else (args.stage,)
    bare_cpu_ms: dict[str, float] = {}
    for stage in stages:
        train = config.vqvae_train if stage == "vqvae" else config.prior_train
        built = build_step(stage, config, precision)
        step = built.run
        step()
        shares, total = profile_shares(step, args.steps)
        timing = timed_steps(step, args.steps)
        bare_cpu_ms[stage] = timing["cpu_ms"]
        print(
            f"\n## {stage}: batch {train.batch_size}, {timing['ms']:.1f} ms per step; "
            f"CPU time per wall second: user {timing['user']:.2f}, system {timing['sys']:.2f}; "
            f"{timing['faults']:.0f} minor page faults per step"
        )
        print("\n| op kind | share of self CPU time |\n| --- | ---: |")
        for kind, share in shares.items():
            print(f"| {kind} | {share:.1%} |")
        phases = built.phases(args.steps)
        total_ms = sum(phases.values())
        print("\n| phase of a step | ms / step | share |\n| --- | ---: | ---: |")
        for phase, ms in phases.items():
            print(f"| {phase} | {ms:.1f} | {ms / total_ms:.1%} |")
        if args.skip_variants:
            continue
        selected = {v.strip() for v in args.variants.split(",") if v.strip()}
        print(
            "\n| variant | ms / step | vs baseline | user CPU / s | system CPU / s "
            "| minor faults / step | first step s |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        )
        runs = variants(selected)
        results: dict[str, list[dict]] = {label: [] for _, label, _, _ in runs}
        failures: dict[str, str] = {}
        for _ in range(args.repeats):  # round robin: a slow spell of the machine hits all
            for _, label, overrides, env in runs:
                spec = {
                    "config": str(path),
                    "stage": stage,
                    "precision": precision,
                    "steps": args.steps,
                    **overrides,
                }
                result = run_variant(spec, env)
                if isinstance(result, str):
                    failures[label] = result
                else:
                    results[label].append(result)
        base = None
        for _, label, _, _ in runs:
            if not results[label]:
                print(f"| {label} | failed: {failures.get(label, '?')} | | | | | |")
                continue
            med = {
                key: statistics.median(r[key] for r in results[label])
                for key in ("ms", "user", "sys", "faults", "first_s")
            }
            base = base or med["ms"]
            print(
                f"| {label} | {med['ms']:.1f} | {base / med['ms']:.2f}x | "
                f"{med['user']:.2f} | {med['sys']:.2f} | {med['faults']:.0f} | "
                f"{med['first_s']:.1f} |",
                flush=True,
            )
        if args.repeats > 1:
            print(f"\n(medians of {args.repeats} runs of each variant, run in turn)")
    sliceset, seconds, batches = data_path_seconds(config)
    print(
        f"\n## data path: one training epoch of {batches} batches of "
        f"{config.vqvae_train.batch_size} drawn in {seconds:.2f} s "
        f"({1000 * seconds / max(batches, 1):.2f} ms per batch)"
    )
    if args.fit_steps:
        fits = fit_times(config, sliceset, args.fit_steps)  # Lightning prints as it goes
        print(
            f"\n## a real fit ({args.fit_steps} steps of one epoch, then validation)\n\n"
            "| stage | bare step CPU ms | Lightning ms / step | Lightning CPU ms / step "
            "| validation epoch s | epoch end s |\n| --- | ---: | ---: | ---: | ---: | ---: |"
        )
        for stage, row in fits.items():
            cells = [bare_cpu_ms.get(stage, float("nan")), *row.values()]
            print(f"| {stage} | " + " | ".join(f"{v:.1f}" for v in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
