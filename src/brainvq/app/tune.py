"""`brainvq tune` as a function a notebook can call: an Optuna study of one stage's
hyperparameters, kept in RUN/tune/ (brainvq.run.RunLayout).

RUN/tune/study.db is the study (unless --storage names another Optuna storage); after every
trial this worker rewrites trials.csv, summary.json and best.yaml from the storage, so they
show every worker's trials; at its end it draws RUN/tune/figures/ and, when RUN has a
report.html, rebuilds it with a tuning section. The training side is brainvq.training:
search_space (the space), study (storage, sampler, pruner, dead trials) and tuning (the trial
objective, pruning at epoch ends, the worker loop).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from brainvq.app.presets import StartingConfig, resolve_config_file
from brainvq.app.tune_files import minutes_taken, trial_note, write_outputs
from brainvq.atomic import output_folder
from brainvq.config import to_dict
from brainvq.data.loader import DEMO, resolve_source
from brainvq.run import RunLayout, read_json
from brainvq.run_config import TUNE_STAGES, RunConfig, load_run_config, merge
from brainvq.training.objectives import OBJECTIVES
from brainvq.training.search_space import parse_space
from brainvq.training.study import best_trial, open_study, shown_storage, state_counts
from brainvq.training.tuning import TrialSetup, run_worker
from brainvq.values import COUNT, MINUTES, SEED


@dataclass(frozen=True)
class TuneJob:
    """One tuning worker's task (the flags of `brainvq tune`)."""

    run_dir: Path
    stage: str
    trials: int = 20  # finished (complete or pruned) trials the study aims for, all workers
    trial_minutes: float | None = None  # None: the base config's max_minutes for the stage
    max_minutes: float | None = None  # this worker starts no trial that would end later
    storage: str | None = None  # an Optuna storage URL; None: sqlite:///RUN/tune/study.db
    study: str | None = None  # None: the stage's name
    vqvae_run: Path | None = None  # prior: the run whose VQ-VAE the trials train on; None: RUN
    # the base config: this file (default: the packaged one that fits the machine; a prior
    # study: the config of the run whose VQ-VAE it trains on), then these overrides
    config: Path | None = None
    data: str | None = None  # the data source (default: the base config's)
    seed: int | None = None  # seeds the sampler and every trial's training
    accelerator: str | None = None
    threads: int | None = None
    progress: bool = True

    def validate(self) -> None:
        """Every value checked by the rule of its kind (brainvq.values), before anything is
        opened or written: a study is never stored with a budget it cannot run."""
        if self.stage not in TUNE_STAGES:
            raise ValueError(f"--stage: expected one of {list(TUNE_STAGES)}, got {self.stage!r}")
        COUNT.check("--trials", self.trials)
        for flag, value, rule in (
            ("--trial-minutes", self.trial_minutes, MINUTES),
            ("--max-minutes", self.max_minutes, MINUTES),
            ("--seed", self.seed, SEED),
            ("--threads", self.threads, COUNT),
        ):
            if value is not None:
                rule.check(flag, value)
        if self.study is not None and not self.study.strip():
            raise ValueError("--study: the study name is empty")
        if self.vqvae_run is not None and self.stage != "prior":
            raise ValueError("--vqvae-run: only a prior study trains on another run's VQ-VAE")


@dataclass(frozen=True)
class TuneResult:
    """What a tuning worker did: summary.json of its study (counts, best, baseline), why it
    stopped, its files (best.yaml, trials.csv, figures/) and the storage as shown to users."""

    summary: dict[str, Any]
    stopped: str
    best_config: Path
    trials: Path
    figures: Path
    storage: str


def base_config(job: TuneJob) -> StartingConfig:
    """The config every trial starts from: job.config, or the default described at TuneJob,
    with the job's data source, seed, accelerator and threads; and the note to show when
    brainvq picked it (presets.ConfigChoice.note). The job is checked first (TuneJob.validate)."""
    job.validate()
    train = {"accelerator": job.accelerator, "threads": job.threads, "seed": job.seed}
    overrides: dict[str, Any] = {
        f"{job.stage}_train": {k: v for k, v in train.items() if v is not None}
    }
    if job.data:
        overrides["data"] = {"source": job.data}
    if job.stage == "prior":
        vqvae_run = RunLayout(job.vqvae_run or job.run_dir)
        config_file = job.config or vqvae_run.config
        if not Path(config_file).is_file():
            raise FileNotFoundError(
                f"{vqvae_run.config} is missing: a prior study starts from the config of the "
                "run whose VQ-VAE it uses (--vqvae-run, default --out), or from --config FILE"
            )
        return StartingConfig(load_run_config(config_file, overrides), None)
    own = RunLayout(job.run_dir).config
    if not (job.data or job.config or own.is_file()):
        raise ValueError(
            "say which data to tune on: --data SOURCE (or --config FILE with data.source)"
        )
    choice = resolve_config_file(job.run_dir, job.config, job.data)
    if choice.preset is not None:
        overrides = merge(overrides, {"preset": to_dict(choice.preset)})
    return StartingConfig(load_run_config(choice.path or own, overrides), choice.note)


def storage_url(layout: RunLayout, storage: str | None) -> str:
    return storage or f"sqlite:///{layout.tune_storage.resolve().as_posix()}"


def _check_tune_folder(layout: RunLayout, name: str, stage: str, storage: str | None) -> None:
    """RUN/tune holds one study: refuse to mix another one (or another storage) into it."""
    found = read_json(layout.tune_summary)
    if not found:
        return
    given = None if storage is None else shown_storage(storage)
    for key, value, flag in (("study", name, "--study"), ("stage", stage, "--stage")):
        if found.get(key) != value:
            raise ValueError(
                f"{layout.tune} holds the study {found.get('study')!r} of the "
                f"{found.get('stage')} stage: a run directory holds one study (use another "
                f"--out, or {flag} {found.get(key)} to continue it)"
            )
    if found.get("storage") != given:
        where = found.get("storage") or f"{layout.tune_storage} (the default)"
        raise ValueError(f"the study in {layout.tune} lives in {where}: run it with that --storage")


def _prior_base(job: TuneJob, base: RunConfig) -> tuple[RunConfig, Path]:
    """A prior study's base config, its VQ-VAE section set to the bundle it trains on."""
    from brainvq.io.bundle import load_vqvae

    vqvae_run = job.vqvae_run or job.run_dir
    bundle = RunLayout(vqvae_run).bundle("vqvae")
    if not bundle.is_dir():
        raise FileNotFoundError(
            f"{bundle} is missing: a prior study trains on the VQ-VAE of --vqvae-run (default "
            f"--out); train one with `brainvq train vqvae --out {vqvae_run}`"
        )
    vqvae = load_vqvae(bundle).config
    if vqvae.image_size != base.data.size:
        raise ValueError(
            f"data.size is {base.data.size} but the VQ-VAE in {bundle} works at "
            f"{vqvae.image_size}: tune the prior with that VQ-VAE's config"
        )
    return load_run_config(None, merge(to_dict(base), {"vqvae": to_dict(vqvae)})), bundle


def _short(values: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k.rpartition('.')[2]}={fmt(v)}" for k, v in values.items())


def _duration(minutes: float) -> str:
    return f"{minutes * 60:.0f} s" if minutes < 1 else f"{minutes:.1f} min"


class StudyProgress:
    """A progress bar over the study's finished trials with the best value so far, and one
    line per trial this worker ran."""

    def __init__(self, study: optuna.Study, target: int, stage: str, enabled: bool) -> None:
        self.study = study
        self.target = target
        self.metric = OBJECTIVES[stage].metric
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=not enabled,
        )
        self.task = self.bar.add_task(self._description("starting"), total=target)
        self._refresh()

    def _description(self, now: str) -> str:
        best = best_trial(self.study)
        shown = (
            "no completed trial yet"
            if best is None
            else (f"best {self.metric} {best.value:.4f} (trial {best.number})")
        )
        return f"tuning: {shown}" + (f"; {now}" if now else "")

    def _refresh(self, now: str = "") -> None:
        counts = state_counts(self.study)
        done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
        self.bar.update(
            self.task, completed=min(done, self.target), description=self._description(now)
        )

    def started(self, number: int, values: dict[str, Any]) -> None:
        self._refresh(f"trial {number} running")
        self.bar.console.print(f"trial {number}: {_short(values)}")

    def ended(self, trial: FrozenTrial) -> None:
        state = trial.state.name.lower()
        value = "" if trial.value is None else f" {self.metric} {trial.value:.4f}"
        minutes = minutes_taken(trial)
        took = "" if minutes is None else f" in {_duration(minutes)}"
        note = trial_note(trial)
        self.bar.console.print(
            f"trial {trial.number} {state}{value}{took}" + (f": {note}" if note else "")
        )
        self._refresh()

    def __enter__(self) -> StudyProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)


@contextmanager
def quiet_trials() -> Iterator[None]:
    """Lightning's and Optuna's per-trial info lines off: the worker prints one line a trial."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    verbosity = optuna.logging.get_verbosity()
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        optuna.logging.set_verbosity(verbosity)


def tune_stage(job: TuneJob, base: RunConfig) -> TuneResult:
    """Run (or continue, or join) the study of `job.stage` from its base config
    (base_config(job).config).

    Everything is checked before any trial runs: the job, the base config, the space, the
    storage, and that RUN/tune holds no other study."""
    from brainvq.app.run_data import run_slices
    from brainvq.inference.codes import encode_splits
    from brainvq.io.bundle import load_vqvae
    from brainvq.report.build import build_report
    from brainvq.report.tune import draw_tune_figures

    job.validate()
    train = getattr(base, f"{job.stage}_train")
    if train.devices * train.num_nodes > 1:
        raise ValueError(
            f"{job.stage}_train.devices x num_nodes is {train.devices * train.num_nodes}: a "
            "tuning worker trains on one device; run one `brainvq tune` per device on one "
            "--storage instead"
        )
    vqvae_bundle = None
    if job.stage == "prior":
        base, vqvae_bundle = _prior_base(job, base)
    space = parse_space(job.stage, base)
    layout = RunLayout(output_folder(job.run_dir, "the run directory"))
    name = job.study or job.stage
    _check_tune_folder(layout, name, job.stage, job.storage)
    trial_minutes = job.trial_minutes if job.trial_minutes is not None else train.max_minutes
    if base.data.source != DEMO:  # a missing or unreadable source fails before the study
        resolve_source(base.data.source, base.data.n_levels)
    layout.tune.mkdir(parents=True, exist_ok=True)
    url = storage_url(layout, job.storage)
    with quiet_trials():
        study = open_study(
            url, name, space, base.tune, trial_minutes, train.seed, space.baseline(base)
        )
    sliceset = run_slices(base, progress=job.progress)
    if vqvae_bundle is not None:  # the code maps every trial trains on, encoded once
        encode_splits(load_vqvae(vqvae_bundle), sliceset, layout.tune_codes)
    write = partial(
        write_outputs,
        layout,
        study,
        space,
        base,
        name=name,
        storage=job.storage,
        trials_target=job.trials,
        trial_minutes=trial_minutes,
    )
    write()
    with quiet_trials(), StudyProgress(study, job.trials, job.stage, job.progress) as progress:
        setup = TrialSetup(
            base=base,
            space=space,
            sliceset=sliceset,
            layout=layout,
            trials=job.trials,
            trial_minutes=trial_minutes,
            vqvae_bundle=vqvae_bundle,
            on_start=progress.started,
        )

        def ended(trial: FrozenTrial) -> None:
            write()
            progress.ended(trial)

        try:
            why = run_worker(study, setup, job.max_minutes, base.tune.max_failed_in_a_row, ended)
        finally:
            summary = write()
            draw_tune_figures(layout, layout.tune_figures)
    if layout.report.is_file():
        build_report(layout.root)
    return TuneResult(
        summary, why, layout.tune_best, layout.tune_trials, layout.tune_figures, shown_storage(url)
    )
