"""The whole pipeline as functions a notebook can call: the CLI only parses and calls these.

RUN/ holds config.yaml, vqvae/, prior/, codes/, logs/, figures/, samples/, metrics.json,
report.html. Nothing outside it is written except the data cache.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from brainvq.atomic import atomic_write_json
from brainvq.bundle import load_prior, load_vqvae
from brainvq.data import load_slices
from brainvq.data.sliceset import SliceSet
from brainvq.evaluation import evaluate_vqvae, update_metrics
from brainvq.training.config import RunConfig, load_run_config, save_run_config

CONFIG_FILE = "config.yaml"
TIMINGS_FILE = "timings.json"


def check_run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"the run directory {run_dir} is a file; expected a folder")
    return run_dir


def prepare_run(run_dir: Path, config_file: Path | None, overrides: dict[str, Any]) -> RunConfig:
    """Resolve the config (defaults < RUN/config.yaml if resuming < FILE < flags) and save it."""
    run_dir = check_run_dir(run_dir)
    saved = run_dir / CONFIG_FILE
    base = saved if saved.is_file() and config_file is None else config_file
    config = load_run_config(base, overrides)
    save_run_config(config, saved)
    return config


def load_run(run_dir: Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The config of an existing run (RUN/config.yaml), with `overrides` applied."""
    run_dir = check_run_dir(run_dir)
    saved = run_dir / CONFIG_FILE
    if not saved.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a brainvq run: {saved} is missing (train one first)"
        )
    return load_run_config(saved, overrides)


def run_slices(config: RunConfig, source: str | None = None, progress: bool = True) -> SliceSet:
    """The slices of the run's data source (or of `source`), at the run's working size."""
    d = config.data
    return load_slices(
        source or d.source,
        size=d.size,
        cache_dir=Path(d.cache_dir) if d.cache_dir else None,
        n_slices=d.n_slices,
        seed=d.seed,
        demo_subjects=tuple(d.demo_subjects),
        progress=progress,
    )


def eval_split(sliceset: SliceSet, wanted: str | None = None) -> str:
    """`wanted` if given (must exist), else test when present, else validate."""
    if wanted:
        sliceset.require_split(wanted)
        return wanted
    for split in ("test", "validate"):
        if (sliceset.split == split).any():
            return split
    raise ValueError(
        f"the source {sliceset.source} has neither a test nor a validate split to evaluate on"
    )


def record_timing(run_dir: Path, name: str, seconds: float) -> None:
    path = Path(run_dir) / TIMINGS_FILE
    timings = json.loads(path.read_text()) if path.is_file() else {}
    timings[name] = round(seconds, 2)
    atomic_write_json(path, timings)


def evaluate_run(run_dir: Path, sliceset: SliceSet, split: str | None = None) -> dict[str, Any]:
    """Evaluate RUN's VQ-VAE on `split` (default test, else validate); writes metrics.json."""
    bundle = load_vqvae(Path(run_dir) / "vqvae")
    metrics, _ = evaluate_vqvae(bundle, sliceset, eval_split(sliceset, split))
    return update_metrics(run_dir, "vqvae", metrics)


def train_vqvae(
    run_dir: Path, config: RunConfig, sliceset: SliceSet, resume: bool = False
) -> dict[str, Any]:
    from brainvq.training.fit_vqvae import fit_vqvae

    start = time.perf_counter()
    fit_vqvae(run_dir, config, sliceset, resume=resume)
    if not is_global_zero():
        return {}
    record_timing(run_dir, "train_vqvae_s", time.perf_counter() - start)
    return evaluate_run(run_dir, sliceset)


def train_prior(
    run_dir: Path, config: RunConfig, sliceset: SliceSet, resume: bool = False
) -> dict[str, Any]:
    from brainvq.prior_eval import evaluate_prior
    from brainvq.training.fit_prior import fit_prior

    start = time.perf_counter()
    fit_prior(run_dir, config, sliceset, resume=resume)
    if not is_global_zero():
        return {}
    record_timing(run_dir, "train_prior_s", time.perf_counter() - start)
    start = time.perf_counter()
    metrics = evaluate_prior(
        run_dir,
        config,
        sliceset,
        load_vqvae(Path(run_dir) / "vqvae"),
        load_prior(Path(run_dir) / "prior"),
    )
    record_timing(run_dir, "evaluate_prior_s", time.perf_counter() - start)
    return update_metrics(run_dir, "prior", metrics)


def is_global_zero() -> bool:
    """True in the process that writes shared outputs (rank 0, or the only process)."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def packaged_config(name: str) -> Path:
    """Path of a config shipped with brainvq (`demo`, `quick`, `oasis`, `oasis_cpu`)."""
    path = Path(__file__).parent / "configs" / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no packaged config {name!r} at {path}")
    return path


def train_all(run_dir: Path, config: RunConfig, resume: bool = False) -> dict[str, Any]:
    """Both stages, the evaluation and the report; prints the metrics table. Returns metrics."""
    from brainvq.report.build import build_report
    from brainvq.report.tables import print_metrics

    start = time.perf_counter()
    sliceset = run_slices(config)
    record_timing(run_dir, "load_data_s", time.perf_counter() - start)
    train_vqvae(run_dir, config, sliceset, resume=resume)
    metrics = train_prior(run_dir, config, sliceset, resume=resume)
    if not is_global_zero():
        return metrics
    start = time.perf_counter()
    html = build_report(run_dir, sliceset=sliceset)
    record_timing(run_dir, "report_s", time.perf_counter() - start)
    print_metrics(metrics, title=f"brainvq metrics ({run_dir})")
    print(f"report: {html}")
    return metrics


def run_demo(run_dir: Path, quick: bool = False, resume: bool = False) -> dict[str, Any]:
    """The main job on the demo cohort (`--quick`: a smoke run of about a minute)."""
    start = time.perf_counter()
    config = prepare_run(run_dir, packaged_config("quick" if quick else "demo"), {})
    metrics = train_all(run_dir, config, resume=resume)
    record_timing(run_dir, "total_s", time.perf_counter() - start)
    return metrics
