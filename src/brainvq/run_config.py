"""A run's configuration: data, both models, both training stages, sampling, tuning and anomaly
maps, one typed section each, in one YAML (RUN/config.yaml; brainvq.run owns where it lies).

`load_run_config` builds it from the defaults, a YAML file and overrides, in that order, checks
every key and range (brainvq.config) and derives the keys that must agree (`sync_derived`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from brainvq.atomic import atomic_write_text
from brainvq.config import from_dict, read_yaml, require, to_dict
from brainvq.data.augment import AugmentConfig
from brainvq.data.mixed import SourceOptions
from brainvq.models.discriminator import AdversarialConfig
from brainvq.models.pixelcnn import PixelCNNConfig
from brainvq.models.vqvae import VQVAEConfig

PRECISIONS = ("auto", "32", "16-mixed", "bf16-mixed")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


@dataclass
class DataConfig:
    """Where the slices come from and how they are prepared."""

    source: str = "demo"
    # more sources trained with `source`, on its frame (e.g. OASIS's band beside whole-brain
    # volumes): each keeps its levels, moved onto the frame, and its split (brainvq.data.mixed)
    sources: tuple[str, ...] = ()
    size: int = 128
    cache_dir: str | None = None
    n_levels: int = 32
    seed: int = 0
    demo_subjects: tuple[int, ...] = (48, 8, 8)
    # NIfTI volumes: every level of the reference frame's grid (1.03 mm apart) whose height in
    # MNI152 lies in [low, high] mm; null: OASIS's 32 levels (z -2.7 to +29.3 mm)
    z_range_mm: tuple[float, ...] | None = None
    num_workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def source_options(self) -> SourceOptions:
        """How each of the run's sources is loaded (brainvq.data.mixed)."""
        return SourceOptions(
            self.size,
            Path(self.cache_dir) if self.cache_dir else None,
            self.n_levels,
            (self.z_range_mm[0], self.z_range_mm[1]) if self.z_range_mm else None,
            self.seed,
            (self.demo_subjects[0], self.demo_subjects[1], self.demo_subjects[2]),
        )

    def validate(self) -> None:
        require(
            self.size > 0 and self.size % 8 == 0,
            "size",
            f"must be a positive multiple of 8, got {self.size}",
        )
        require(self.n_levels >= 1, "n_levels", f"must be >= 1, got {self.n_levels}")
        require(
            len(self.demo_subjects) == 3 and all(n >= 1 for n in self.demo_subjects),
            "demo_subjects",
            "expected three positive counts (train, validate, test), "
            f"got {list(self.demo_subjects)}",
        )
        require(self.num_workers >= 0, "num_workers", f"must be >= 0, got {self.num_workers}")
        require(
            self.z_range_mm is None
            or (len(self.z_range_mm) == 2 and self.z_range_mm[0] < self.z_range_mm[1]),
            "z_range_mm",
            f"expected [low, high] millimetres with low < high, or null, got {self.z_range_mm}",
        )


@dataclass
class TrainConfig:
    """One training stage (VQ-VAE or prior): budget, optimiser and hardware."""

    epochs: int = 10
    max_minutes: float | None = None
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    gradient_clip: float = 1.0
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # see brainvq.training.trainer.resolve_precision
    # channels_last weights and activations: faster convolution steps in bf16 on this
    # project's CPUs (docs/results.md, "What moved the numbers": the demo's VQ-VAE trained 22
    # epochs in its budget instead of 15); the usual layout for convolutions in mixed
    # precision on GPUs too
    channels_last: bool = True
    # torch intra-op threads; None: one per usable core (split between the processes of a
    # DDP run on one machine)
    threads: int | None = None
    seed: int = 0
    deterministic: bool = False
    log_every_n_steps: int = 10
    limit_train_batches: int | None = None

    def validate(self) -> None:
        require(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        require(
            self.max_minutes is None or self.max_minutes > 0,
            "max_minutes",
            f"must be > 0, got {self.max_minutes}",
        )
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        require(
            0 <= self.min_lr_ratio <= 1,
            "min_lr_ratio",
            f"must be in [0, 1], got {self.min_lr_ratio}",
        )
        require(self.gradient_clip >= 0, "gradient_clip", f"must be >= 0, got {self.gradient_clip}")
        require(
            self.accelerator in ACCELERATORS,
            "accelerator",
            f"expected one of {list(ACCELERATORS)}, got {self.accelerator!r}",
        )
        require(self.devices >= 1, "devices", f"must be >= 1, got {self.devices}")
        require(self.num_nodes >= 1, "num_nodes", f"must be >= 1, got {self.num_nodes}")
        require(
            self.precision in PRECISIONS,
            "precision",
            f"expected one of {list(PRECISIONS)}, got {self.precision!r}",
        )
        require(
            self.threads is None or self.threads >= 1,
            "threads",
            f"must be >= 1 (or null: one per core), got {self.threads}",
        )
        require(self.log_every_n_steps >= 1, "log_every_n_steps", "must be >= 1")
        require(
            self.limit_train_batches is None or self.limit_train_batches >= 1,
            "limit_train_batches",
            f"must be >= 1, got {self.limit_train_batches}",
        )


@dataclass
class SampleConfig:
    """How the report draws samples from the prior."""

    n: int = 16
    temperature: float = 1.0
    top_k: int | None = None
    seed: int = 0
    per_level: int = 4
    n_levels_shown: int = 8
    keep_rows: int = 12
    n_generation_eval: int = 256
    # slices the level classifier (whose features the generation metrics use) is trained on,
    # counted with repeats (at least 4 epochs): a fixed cost of every prior evaluation, whatever
    # the cohort's size (about 4 epochs of ../shared/oasis's 4,800 training slices)
    classifier_presentations: int = 20_000

    def validate(self) -> None:
        require(self.n >= 1, "n", f"must be >= 1, got {self.n}")
        require(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        require(self.top_k is None or self.top_k >= 1, "top_k", f"must be >= 1, got {self.top_k}")
        require(self.per_level >= 1, "per_level", "must be >= 1")
        require(self.n_levels_shown >= 1, "n_levels_shown", "must be >= 1")
        require(self.keep_rows >= 0, "keep_rows", "must be >= 0")
        require(self.n_generation_eval >= 0, "n_generation_eval", "must be >= 0")
        require(
            self.classifier_presentations >= 1,
            "classifier_presentations",
            f"must be >= 1, got {self.classifier_presentations}",
        )


def _default_prior_train() -> TrainConfig:
    # Small batches at a high rate: on the demo cohort at 4.5 CPU minutes and lr 8e-3, batch
    # 16 instead of 32 took the level accuracy from 0.56 to 0.73 (docs/results.md, "What moved
    # the numbers"), and batch 8 did better still in the demo pipeline.
    return TrainConfig(epochs=10, lr=8e-3, batch_size=8)


TUNE_STAGES = ("vqvae", "prior")


@dataclass
class TuneConfig:
    """What `brainvq tune` searches: one space per stage, and how trials are sampled and pruned.

    A space maps a dotted config key to a range or to choices, e.g.
    `vqvae_train.lr: {low: 5.0e-4, high: 8.0e-3, log: true}`, `vqvae_train.batch_size:
    [8, 16, 32]` or `vqvae.channels: [[16, 32], [32, 64]]`. An empty space means brainvq's
    default space for the stage, drawn around the base config's values; a space given here
    replaces the default whole. Spaces are parsed and checked against the config when a study
    starts (brainvq.training.search_space: default_space, parse_space).
    """

    vqvae: dict[str, Any] = field(default_factory=dict)
    prior: dict[str, Any] = field(default_factory=dict)
    # trials sampled at random before TPE models the results; also the completed trials the
    # median pruner needs before it prunes anything
    startup_trials: int = 5
    prune: bool = True
    # share of its budget (time or epochs, whichever is further along) a trial always gets
    # before it may be pruned
    prune_after: float = 0.25
    # a worker stops when this many of its trials in a row failed (a broken base config
    # would otherwise fail forever)
    max_failed_in_a_row: int = 5

    def validate(self) -> None:
        for stage in TUNE_STAGES:
            space = getattr(self, stage)
            require(
                isinstance(space, dict) and all(isinstance(k, str) for k in space),
                stage,
                f"expected a mapping of config key -> range or choices, got {space!r}",
            )
        require(
            self.startup_trials >= 0,
            "startup_trials",
            f"must be >= 0, got {self.startup_trials}",
        )
        require(
            0 <= self.prune_after <= 1, "prune_after", f"must be in [0, 1], got {self.prune_after}"
        )
        require(
            self.max_failed_in_a_row >= 1,
            "max_failed_in_a_row",
            f"must be >= 1, got {self.max_failed_in_a_row}",
        )


MAP_WEIGHTS = ("code_nll", "resampled")
BRAIN_MASKS = ("healed", "input")
# the `anomaly:` keys added since runs and calibrations were first saved, with what a saved one
# that lacks them meant: it keeps its maps, and so its calibrations and answers
LEGACY_ANOMALY = {"weight": "resampled", "brain": "input"}


def with_legacy_anomaly(settings: dict[str, Any]) -> dict[str, Any]:
    """An `anomaly:` section (or a calibration's settings) as saved: a key it lacks was added
    after it was saved, and takes the meaning it had then (LEGACY_ANOMALY)."""
    return {**LEGACY_ANOMALY, **settings}


@dataclass
class AnomalyConfig:
    """How `brainvq anomaly` makes its maps (brainvq.inference.anomaly_maps) and calibrates their
    thresholds; a calibration holds only for the settings it was made with."""

    n_heal: int = 4  # independent healings per slice, averaged
    # the code threshold: the (1 - resample_share) quantile of the training codes' NLL, so that
    # about this share of healthy codes is redrawn
    resample_share: float = 0.05
    temperature: float = 1.0  # of the draws that replace flagged codes
    # what weights the residual of a healing (brainvq.inference.anomaly_maps, step 3):
    # "code_nll", a redrawn code by how far its input code's teacher-forced NLL is above the
    # code threshold (at least REDRAWN_FLOOR_NATS); "resampled", every redrawn code alike (which
    # cascade: a redrawn code makes the next ones unlikely too). A run saved without this key
    # made its maps by "resampled" and keeps it (LEGACY_ANOMALY).
    weight: str = "code_nll"
    # the brain mask of a slice whose mask is not given (a registered scan's is): "healed", the
    # slice's own (`brain_mask`) together with its healed versions', so that a dark lesion at
    # the brain's edge, which the slice's own mask leaves out, is judged; "input", its own
    brain: str = "healed"
    mask_sigma: float = 1.0  # latent cells: how far around a weighted code the residual counts
    smooth_sigma: float = 0.5  # latent cells: smoothing of the residuals (and the baselines')
    score_share: float = 0.005  # slice score: mean of the map over its top share of pixels
    foreground_level: float = 0.02  # brain mask: intensity above this, holes filled
    code_maps: int = 1024  # at most this many training code maps for the code threshold
    calibration_slices: int = 512  # at most this many healthy slices for the pixel threshold
    seed: int = 0  # which slices and maps calibrate, and the calibration's healing draws
    # a prior of whole subjects (prior.neighbour: previous): true judges and heals each slice
    # of a volume given the healed slice below it (and calibrates on whole subjects alike);
    # off by default, as it did not measure better (docs/subjects.md, "Anomaly maps with 3D
    # context")
    context: bool = False

    def validate(self) -> None:
        require(self.n_heal >= 1, "n_heal", f"must be >= 1, got {self.n_heal}")
        require(
            0 < self.resample_share < 1,
            "resample_share",
            f"must be in (0, 1), got {self.resample_share}",
        )
        require(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        require(
            self.weight in MAP_WEIGHTS,
            "weight",
            f"must be one of {', '.join(MAP_WEIGHTS)}, got {self.weight!r}",
        )
        require(
            self.brain in BRAIN_MASKS,
            "brain",
            f"must be one of {', '.join(BRAIN_MASKS)}, got {self.brain!r}",
        )
        require(self.mask_sigma >= 0, "mask_sigma", f"must be >= 0, got {self.mask_sigma}")
        require(self.smooth_sigma >= 0, "smooth_sigma", f"must be >= 0, got {self.smooth_sigma}")
        require(
            0 < self.score_share <= 1, "score_share", f"must be in (0, 1], got {self.score_share}"
        )
        require(
            0 <= self.foreground_level < 1,
            "foreground_level",
            f"must be in [0, 1), got {self.foreground_level}",
        )
        require(self.code_maps >= 1, "code_maps", f"must be >= 1, got {self.code_maps}")
        require(
            self.calibration_slices >= 1,
            "calibration_slices",
            f"must be >= 1, got {self.calibration_slices}",
        )


@dataclass
class PresetInfo:
    """Which configuration a run started from, and why (recorded in RUN/config.yaml)."""

    name: str = ""  # a packaged config's name or a YAML file's path; "" for the defaults
    reason: str = ""


@dataclass
class RunConfig:
    """Everything one pipeline run needs; saved as RUN/config.yaml."""

    preset: PresetInfo = field(default_factory=PresetInfo)
    data: DataConfig = field(default_factory=DataConfig)
    vqvae: VQVAEConfig = field(default_factory=VQVAEConfig)
    vqvae_train: TrainConfig = field(default_factory=TrainConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    prior: PixelCNNConfig = field(default_factory=PixelCNNConfig)
    prior_train: TrainConfig = field(default_factory=_default_prior_train)
    sample: SampleConfig = field(default_factory=SampleConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)

    def validate(self) -> None:
        require(
            self.vqvae.image_size == self.data.size,
            "vqvae.image_size",
            f"must equal data.size ({self.data.size}), got {self.vqvae.image_size}",
        )
        require(
            self.prior.codebook_size == self.vqvae.codebook_size,
            "prior.codebook_size",
            f"must equal vqvae.codebook_size ({self.vqvae.codebook_size}), "
            f"got {self.prior.codebook_size}",
        )
        require(
            not self.adversarial.enabled or self.adversarial.output_size(self.data.size) >= 1,
            "adversarial.layers",
            f"{self.adversarial.layers} stride-2 layers leave no patch of a "
            f"{self.data.size}x{self.data.size} slice (at most "
            f"{(self.data.size // 3).bit_length() - 1} layers)",
        )
        require(
            not (self.adversarial.enabled and self.vqvae.dims == 3),
            "adversarial.enabled",
            "the patch discriminator judges slices; a 3D VQ-VAE (vqvae.dims: 3) trains without "
            "it: set adversarial.enabled: false",
        )


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge `override` into a copy of `base` (mappings merge, other values replace)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_run_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    saved: bool = False,
) -> RunConfig:
    """Defaults, then the YAML file at `path`, then `overrides` (nested dict); validated.
    saved: `path` is a run's own config.yaml (a whole config as it was saved), where a key
    added since keeps the meaning it had before it existed (`with_legacy_anomaly`)."""
    data = to_dict(RunConfig())
    if path is not None:
        loaded = read_yaml(path)
        if saved and isinstance(loaded, dict):
            section = loaded.get("anomaly")
            if section is None or isinstance(section, dict):
                loaded = {**loaded, "anomaly": with_legacy_anomaly(section or {})}
        data = merge(data, loaded)
    if overrides:
        data = merge(data, overrides)
    return from_dict(RunConfig, sync_derived(data))


def sync_derived(data: dict[str, Any]) -> dict[str, Any]:
    """Derive the keys that must agree: vqvae.image_size <- data.size, prior.codebook_size <- K.

    They are derived rather than asked for, so a user who changes `data.size` or the codebook
    size in one place never meets a mismatch error."""
    data = merge(data, {})
    data["vqvae"] = dict(data["vqvae"], image_size=data["data"]["size"])
    data["prior"] = dict(data["prior"], codebook_size=data["vqvae"]["codebook_size"])
    return data


def save_run_config(config: RunConfig, path: str | Path) -> Path:
    return atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
