"""Cohorts larger than memory, the whole commands: the peak anonymous memory of every command
that reads a cohort, per phase, on synthetic PNG cohorts of 10^4 to 10^6 slices at 128x128.

For each size, on the cohort of benchmarks/scale_cohort.py (100 slices per virtual subject,
OASIS-style names, split 80/10/10 by subject), each command runs as a user runs it, in a
process of its own, one after the other, while this one samples the process tree's memory
every 0.2 s (scale_cohort.TreeMemory: Pss_Anon + Pss_Shmem summed over the tree, the pages of
mapped files apart; and the whole PSS beside it):

    build        brainvq data inspect COHORT                    (the slice store, once per size)
    train-all    brainvq train all --data COHORT --config CFG --out RUN --max-minutes M --epochs 1
    evaluate     brainvq evaluate --run RUN
    encode       brainvq encode --model RUN --input COHORT --out DIR
    reconstruct  brainvq reconstruct --model RUN --input COHORT --out DIR
    tune         brainvq tune --stage prior --out RUN --trials 1 --trial-minutes M
    calibrate    brainvq anomaly calibrate --run RUN

CFG (written under --root) is a tiny model at 128x128 (CONFIG below), so that a command's time
goes to the data path and not to the model. The phases: the child process wraps the functions
of PHASES (innermost wins) so that each writes its phase to a file when it starts and ends;
the sampler reads the file at every sample. Time outside every phase is "other" (start-up,
saving bundles, printing). glibc keeps freed heap memory in the process (brainvq's
keep_freed_memory), so a phase's peak includes what earlier phases left in the heap: the phase
where the peak first rises is the one that allocated it.

`--src PATH` runs the commands on another copy of the package (e.g. `git archive` of an earlier
commit, extracted), to measure before and after a change on the same cohort.

    python benchmarks/bench_scale.py [--sizes 10000 100000 1000000] [--minutes 1]
        [--commands train-all evaluate ...] [--root /tmp/brainvq-scale] [--src PATH] [--json F]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from scale_cohort import SIZE, TreeMemory, cohort

CONFIG = {
    "data": {"size": SIZE},
    "vqvae": {
        "downsample": 8,
        "channels": [8, 8, 16],
        "res_blocks": 1,
        "res_channels": 8,
        "code_dim": 8,
        "codebook_size": 32,
        "restart_buffer": 256,
    },
    "vqvae_train": {"batch_size": 32, "lr": 0.003, "warmup_steps": 2},
    "prior": {"embed_dim": 8, "channels": 8, "n_layers": 2, "head_channels": 16},
    "prior_train": {"batch_size": 32, "lr": 0.003, "warmup_steps": 2},
    "sample": {
        "n": 8,
        "per_level": 1,
        "n_levels_shown": 4,
        "keep_rows": 8,
        "n_generation_eval": 64,
    },
    "anomaly": {"n_heal": 1, "calibration_slices": 128, "code_maps": 256},
}

# (module, function, phase): the phase a function's call belongs to (the innermost one wins)
PHASES = (
    ("brainvq.data.loader", "load_slices", "data"),
    ("brainvq.training.fit_vqvae", "fit_vqvae", "fit vqvae"),
    ("brainvq.training.fit_prior", "fit_prior", "fit prior"),
    ("brainvq.inference.codes", "encode_splits", "encode splits"),
    ("brainvq.evaluation.reconstruction", "evaluate_vqvae", "evaluate vqvae"),
    ("brainvq.evaluation.prior", "evaluate_prior", "evaluate prior"),
    ("brainvq.app.run_files", "write_data_summary", "figure files"),
    ("brainvq.app.run_files", "write_reconstructions", "figure files"),
    ("brainvq.app.run_files", "write_figure_samples", "figure files"),
    ("brainvq.app.subjects", "write_run_subjects", "figure files"),
    ("brainvq.report.build", "build_report", "report"),
    ("brainvq.app.reconstruct", "encode_input", "encode"),
    ("brainvq.app.writers", "reconstruct_to_folder", "reconstruct"),
    ("brainvq.app.anomaly.calibration", "calibrate_run", "calibrate"),
    ("brainvq.training.tuning", "run_trial", "trial"),
)
COMMANDS = ("build", "train-all", "evaluate", "encode", "reconstruct", "tune", "calibrate")


def command_line(name: str, folder: Path, root: Path, run: Path, minutes: float) -> list[str]:
    """The brainvq arguments of command `name`."""
    budget = ["--max-minutes", str(minutes), "--epochs", "1", "--accelerator", "cpu"]
    return {
        "build": ["data", "inspect", str(folder), "--size", str(SIZE), "--no-progress"],
        "train-all": ["train", "all", "--data", str(folder), "--config", str(root / "cfg.yaml")]
        + ["--out", str(run), *budget],
        "evaluate": ["evaluate", "--run", str(run)],
        "encode": ["encode", "--model", str(run), "--input", str(folder)]
        + ["--out", str(root / "encoded")],
        "reconstruct": ["reconstruct", "--model", str(run), "--input", str(folder)]
        + ["--out", str(root / "reconstructed")],
        "tune": ["tune", "--stage", "prior", "--out", str(run), "--trials", "1"]
        + ["--trial-minutes", str(minutes), "--accelerator", "cpu"],
        "calibrate": ["anomaly", "calibrate", "--run", str(run)],
    }[name]


# ---- in the child: the command, its phases named in a file --------------------------------


def child(phase_file: Path, argv: list[str]) -> int:
    """Run `brainvq argv` with PHASES' functions naming their phase in `phase_file`."""
    stack: list[str] = []
    t0 = time.perf_counter()

    def mark() -> None:
        with open(phase_file, "a") as f:
            f.write(f"{time.perf_counter() - t0:.3f} {stack[-1] if stack else 'other'}\n")

    def wrap(function, phase):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            stack.append(phase)
            mark()
            try:
                return function(*args, **kwargs)
            finally:
                stack.pop()
                mark()

        return wrapper

    from brainvq.app import cli

    targets = {}
    for module, name, phase in PHASES:
        try:
            function = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):  # another version of the package
            continue
        targets[id(function)] = (function, wrap(function, phase))
    for module in [m for n, m in sys.modules.items() if n.startswith("brainvq")]:
        for attr, value in list(vars(module).items()):
            if id(value) in targets and value is targets[id(value)][0]:
                setattr(module, attr, targets[id(value)][1])
    mark()
    return cli.main(argv)


# ---- in this process: run, sample, tabulate -----------------------------------------------


def run_command(argv: list[str], root: Path, src: Path | None) -> dict:
    """Run `brainvq argv` in a child; its seconds, exit code and peak memory, overall and per
    phase (with each phase's seconds)."""
    phase_file = root / "phases.txt"
    phase_file.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--child", str(phase_file), "--", *argv]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BRAINVQ_CACHE": str(root / "cache")}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    memory = TreeMemory(proc.pid, phase_file=phase_file)
    memory.start()
    _, err = proc.communicate()
    memory.stop.set()
    memory.join()
    seconds = {}
    marks = [line.split(" ", 1) for line in phase_file.read_text(encoding="utf-8").splitlines()]
    for (t, phase), (t_next, _) in zip(marks, marks[1:], strict=False):
        seconds[phase] = seconds.get(phase, 0.0) + float(t_next) - float(t)
    tail = err.decode(errors="replace").strip().splitlines()[-3:]
    return {
        "seconds": time.perf_counter() - t0,
        "rc": proc.returncode,
        "error": tail if proc.returncode else [],
        "peak_anon_mb": memory.peak_anon_mb,
        "peak_mb": memory.peak_mb,
        "phases": {
            p: {"anon_mb": memory.phase_anon_mb[p], "mb": memory.phase_mb[p], "s": seconds.get(p)}
            for p in memory.phase_anon_mb
        },
    }


def write_config(root: Path, minutes: float, generation_eval: int) -> None:
    cfg = json.loads(json.dumps(CONFIG))
    cfg["sample"]["n_generation_eval"] = generation_eval
    for stage in ("vqvae_train", "prior_train"):
        cfg[stage].update(max_minutes=minutes, epochs=1)
    (root / "cfg.yaml").write_text(json.dumps(cfg, indent=2))  # JSON is YAML


def table(results: dict[str, dict[str, dict]]) -> str:
    """Markdown: command x phase x peak anonymous MB (and seconds) per size."""
    sizes = sorted(results, key=int)
    head = "| command | phase | " + " | ".join(f"{int(n):,} slices: MB (s)" for n in sizes) + " |"
    lines = [head, "| --- | --- |" + " ---: |" * len(sizes)]
    commands = [c for c in COMMANDS if any(c in results[n] for n in sizes)]
    for command in commands:
        phases: list[str] = []
        for n in sizes:
            for p in results[n].get(command, {}).get("phases", {}):
                phases += [p] if p not in phases else []
        for phase in ["(whole)", *phases]:
            cells = []
            for n in sizes:
                r = results[n].get(command)
                if r is None:
                    cells.append("-")
                elif phase == "(whole)":
                    failed = f" exit {r['rc']}" if r["rc"] else ""
                    cells.append(f"**{r['peak_anon_mb']:,.0f}** ({r['seconds']:.0f}){failed}")
                elif phase in r["phases"]:
                    p = r["phases"][phase]
                    cells.append(f"{p['anon_mb']:,.0f} ({p['s'] or 0:.0f})")
                else:
                    cells.append("-")
            lines.append(f"| {command} | {phase} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(child(Path(sys.argv[2]), sys.argv[4:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    parser.add_argument("--root", type=Path, default=Path("/tmp/brainvq-scale"))
    parser.add_argument("--minutes", type=float, default=1.0, help="each training's budget")
    parser.add_argument("--src", type=Path, help="run another copy of the package (its src/)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep each size's run and outputs")
    parser.add_argument(
        "--generation-eval",
        type=int,
        default=CONFIG["sample"]["n_generation_eval"],
        help="sample.n_generation_eval (0: no generation metrics, no level classifier)",
    )
    args = parser.parse_args()
    from brainvq.hardware import machine

    print(f"machine: {machine().describe()}", flush=True)
    results: dict[str, dict[str, dict]] = {}
    for n in sorted(args.sizes):
        folder = cohort(args.root, n)
        work = args.root / f"commands_{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        write_config(work, args.minutes, args.generation_eval)
        shutil.rmtree(work / "cache", ignore_errors=True)
        results[str(n)] = {}
        for name in args.commands:
            argv = command_line(name, folder, work, work / "run", args.minutes)
            r = run_command(argv, work, args.src)
            results[str(n)][name] = r
            print(f"{n} {name}: {json.dumps(r)}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"machine: {machine().describe()}")
    print(f"model and settings: {json.dumps(CONFIG)}; {args.minutes} min per training")
    print(f"sample.n_generation_eval: {args.generation_eval}")
    print("peak anonymous memory (Pss_Anon + Pss_Shmem) summed over the process tree, MB;")
    print("in brackets the seconds of the command or phase")
    print(table(results))


if __name__ == "__main__":
    main()
