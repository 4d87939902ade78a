"""The run: its directory (every path and file name in one place), its configuration's place and
life (prepare_run, load_run; the sections themselves: brainvq.run_config), and its metrics and
timings.

A run directory holds everything one pipeline run made:

    RUN/config.yaml           the resolved configuration
    RUN/vqvae/                VQVAE_Model/ (the bundle), checkpoints/, frames/, history.json
    RUN/prior/                PixelCNN_Model/, checkpoints/, history.json
    RUN/codes/                code maps of every split (<split>.npy, <split>.level.npy), index.json
    RUN/evaluation/           what the evaluation saw, for the report (npz + JSON)
    RUN/samples/              generated slices: generated.npz (metrics), figures.npz (report),
                              subjects.npz (whole subjects and a real one, for the report)
    RUN/anomaly/              calibration.json: the run's anomaly thresholds (`brainvq anomaly
                              calibrate`); calibrations/<key>.npz: the maps they come from, one
                              file per models, settings and source (calibration_maps.npz: older)
    RUN/space.json            the run's frame in the reference space (MNI152) and intensities
    RUN/logs/                 TensorBoard and CSV logs
    RUN/figures/              every figure of the report
    RUN/metrics.json          {"vqvae": {...}, "prior": {...}}
    RUN/timings.json          seconds per stage
    RUN/report.html           the report page
    RUN/tune/                 a hyperparameter study of one stage (`brainvq tune`): study.db,
                              summary.json, trials.csv, best.yaml, figures/, trials/<number>/
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainvq.atomic import atomic_write_json, output_folder
from brainvq.config import to_dict
from brainvq.data.loader import DEMO, resolve_source
from brainvq.data.mixed import level_offsets
from brainvq.data.space.run_space import spanning_frame
from brainvq.run_config import PresetInfo, RunConfig, load_run_config, merge, save_run_config

STAGES = ("vqvae", "prior")
VQVAE_FOLDER = "VQVAE_Model"
PRIOR_FOLDER = "PixelCNN_Model"
BUNDLE_FOLDERS = {"vqvae": VQVAE_FOLDER, "prior": PRIOR_FOLDER}
CONFIG_FILE = "config.yaml"
PACKAGED_CONFIGS = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class RunLayout:
    """Every path of a run directory. Nothing else in brainvq spells a run's file names."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def timings(self) -> Path:
        return self.root / "timings.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def codes(self) -> Path:
        return self.root / "codes"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def predict(self) -> Path:
        return self.root / "predict"

    def stage(self, stage: str) -> Path:
        """RUN/vqvae or RUN/prior."""
        if stage not in STAGES:
            raise ValueError(f"stage: expected one of {list(STAGES)}, got {stage!r}")
        return self.root / stage

    def bundle(self, stage: str) -> Path:
        """RUN/vqvae/VQVAE_Model or RUN/prior/PixelCNN_Model."""
        return self.stage(stage) / BUNDLE_FOLDERS[stage]

    def checkpoints(self, stage: str) -> Path:
        return self.stage(stage) / "checkpoints"

    def last_checkpoint(self, stage: str) -> Path:
        return self.checkpoints(stage) / "last.ckpt"

    def history(self, stage: str) -> Path:
        return self.stage(stage) / "history.json"

    @property
    def frames(self) -> Path:
        """RUN/vqvae/frames: the fixed validation slices reconstructed after every epoch."""
        return self.stage("vqvae") / "frames"

    @property
    def generated(self) -> Path:
        """The slices generated for the generation metrics (codes, images, levels, floor)."""
        return self.samples / "generated.npz"

    @property
    def subjects(self) -> Path:
        """Generated subjects next to a real one, for the report's three-plane figure."""
        return self.samples / "subjects.npz"

    @property
    def figure_samples(self) -> Path:
        """The samples and completions the report shows."""
        return self.samples / "figures.npz"

    @property
    def reconstructions(self) -> Path:
        """What the VQ-VAE evaluation saw: per-image SSIM, code counts, the shown slices."""
        return self.evaluation / "reconstructions.npz"

    @property
    def dataset_samples(self) -> Path:
        """A few slices of each split, for the report's dataset figure."""
        return self.evaluation / "dataset_samples.npz"

    @property
    def level_classifier(self) -> Path:
        """The level classifier the generation metrics used (a bundle folder)."""
        return self.evaluation / "LevelClassifier"

    @property
    def data_summary(self) -> Path:
        """The data source, slices and subjects per split, and the loader's notes."""
        return self.evaluation / "data.json"

    @property
    def space(self) -> Path:
        """Where the run's slices lie in the reference space (its frame) and its training
        data's intensity landmarks (brainvq.data.space.run_space)."""
        return self.root / "space.json"

    @property
    def anomaly(self) -> Path:
        """RUN/anomaly: the calibration of the anomaly maps (`brainvq anomaly`)."""
        return self.root / "anomaly"

    @property
    def anomaly_calibration(self) -> Path:
        """The anomaly thresholds and the settings and data they were calibrated with."""
        return self.anomaly / "calibration.json"

    @property
    def anomaly_calibrations(self) -> Path:
        """One file per calibration `brainvq anomaly calibrate` made, named by its key."""
        return self.anomaly / "calibrations"

    @property
    def anomaly_calibration_maps(self) -> Path:
        """The healthy calibration slices' map values, to re-threshold at another alpha."""
        return self.anomaly / "calibration_maps.npz"

    @property
    def tune(self) -> Path:
        """RUN/tune: one hyperparameter study of one stage (`brainvq tune`)."""
        return self.root / "tune"

    @property
    def tune_storage(self) -> Path:
        """The study's default Optuna storage (SQLite), unless --storage names another."""
        return self.tune / "study.db"

    @property
    def tune_summary(self) -> Path:
        """Which study RUN/tune holds (name, stage, objective, space), its best trial and the
        parameters' importances: what the figures and the report read."""
        return self.tune / "summary.json"

    @property
    def tune_trials(self) -> Path:
        """One row per trial: number, state, objective, minutes, sampled values, note."""
        return self.tune / "trials.csv"

    @property
    def tune_best(self) -> Path:
        """The base config with the best trial's values (`brainvq train all --config`)."""
        return self.tune / "best.yaml"

    @property
    def tune_figures(self) -> Path:
        return self.tune / "figures"

    @property
    def tune_codes(self) -> Path:
        """Prior studies: the code maps of the VQ-VAE the trials train on, encoded once."""
        return self.tune / "codes"

    def tune_trial(self, number: int) -> Path:
        """RUN/tune/trials/<number>: the run directory trial `number` trained."""
        return self.tune / "trials" / str(number)


def packaged_config(name: str) -> Path:
    """Path of a config shipped with brainvq (`demo`, `quick`, `oasis`, `oasis_cpu`,
    `whole_brain`)."""
    path = PACKAGED_CONFIGS / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))
        raise FileNotFoundError(f"no packaged config {name!r} (known: {', '.join(known)})")
    return path


def prepare_run(
    run_dir: str | Path,
    config_file: str | Path | None,
    overrides: dict[str, Any],
    preset: PresetInfo | None = None,
) -> RunConfig:
    """Resolve the config (defaults < RUN/config.yaml if resuming < FILE < flags) and save it.

    `preset` records where the configuration came from (a packaged config chosen for this
    machine, or the file given); it is kept from RUN/config.yaml when a run is continued."""
    layout = RunLayout(output_folder(run_dir, "the run directory"))
    base = layout.config if layout.config.is_file() and config_file is None else config_file
    if preset is not None:
        overrides = merge(overrides, {"preset": to_dict(preset)})
    # a continued run keeps what its saved config meant (load_run_config's `saved`)
    config = load_run_config(base, overrides, saved=base == layout.config)
    z_range = tuple(config.data.z_range_mm) if config.data.z_range_mm else None
    if z_range is not None:  # a range outside the template fails before any write
        check_level_stride(spanning_frame(z_range).n_levels, config)
    if config.data.source != DEMO:  # a missing or unreadable source fails before any write
        resolve_source(config.data.source, config.data.n_levels, z_range)
    if config.data.sources:  # as does a source whose frame is not a range of the run's
        level_offsets((config.data.source, *config.data.sources), config.data.source_options())
    save_run_config(config, layout.config)
    return config


def check_level_stride(n_levels: int, config: RunConfig) -> None:
    """ValueError unless a frame of n_levels levels fits the VQ-VAE's stride through the levels
    (a 3D model codes a volume's levels in groups of vqvae.level_downsample; a 2D one: 1)."""
    stride = config.vqvae.level_stride
    if n_levels % stride:
        raise ValueError(
            f"data.z_range_mm {list(config.data.z_range_mm or [])} gives {n_levels} levels, "
            f"expected a positive multiple of the 3D VQ-VAE's level stride {stride} "
            "(vqvae.level_downsample): widen or narrow the range"
        )


def load_run(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The config of an existing run (RUN/config.yaml), with `overrides` applied. Reading a run
    needs no write access: a run on a read-only disk loads."""
    root = Path(run_dir)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"the run directory {root} is a file; expected a brainvq run")
    layout = RunLayout(root)
    if not layout.config.is_file():
        raise FileNotFoundError(
            f"{layout.root} is not a brainvq run: {layout.config} is missing (train one first)"
        )
    return load_run_config(layout.config, overrides, saved=True)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, {} when the file does not exist."""
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def update_metrics(run_dir: str | Path, key: str, values: dict[str, Any]) -> dict[str, Any]:
    """Merge `values` under `key` into RUN/metrics.json (atomic); returns the whole document."""
    path = RunLayout(run_dir).metrics
    doc = read_json(path)
    doc[key] = {**doc.get(key, {}), **values}
    atomic_write_json(path, doc)
    return doc


def record_timing(run_dir: str | Path, name: str, seconds: float) -> None:
    """Set RUN/timings.json[name] to `seconds` (rounded to 0.01 s)."""
    path = RunLayout(run_dir).timings
    timings = read_json(path)
    timings[name] = round(seconds, 2)
    atomic_write_json(path, timings)
