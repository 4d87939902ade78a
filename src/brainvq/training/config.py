"""The run configuration: data, both models, both training stages and sampling, in one YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from brainvq.atomic import atomic_write_text
from brainvq.config import from_dict, read_yaml, require, to_dict
from brainvq.data.dataset import AugmentConfig
from brainvq.models.pixelcnn import PixelCNNConfig
from brainvq.models.vqvae import VQVAEConfig

PRECISIONS = ("auto", "32", "16-mixed", "bf16-mixed")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


@dataclass
class DataConfig:
    """Where the slices come from and how they are prepared."""

    source: str = "demo"
    size: int = 128
    cache_dir: str | None = None
    n_slices: int = 32
    seed: int = 0
    demo_subjects: tuple[int, ...] = (48, 8, 8)
    num_workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def validate(self) -> None:
        require(
            self.size > 0 and self.size % 8 == 0,
            "size",
            f"must be a positive multiple of 8, got {self.size}",
        )
        require(self.n_slices >= 1, "n_slices", f"must be >= 1, got {self.n_slices}")
        require(
            len(self.demo_subjects) == 3 and all(n >= 1 for n in self.demo_subjects),
            "demo_subjects",
            "expected three positive counts (train, validate, test), "
            f"got {list(self.demo_subjects)}",
        )
        require(self.num_workers >= 0, "num_workers", f"must be >= 0, got {self.num_workers}")


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
    # channels_last weights and activations: on this project's 2-core CPU in bf16, VQ-VAE
    # training steps ran 13-24% faster (benchmarks/bench_vqvae.py --memory-format) and the
    # prior's 12-22%; the usual layout for convolutions in mixed precision on GPUs too
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

    def validate(self) -> None:
        require(self.n >= 1, "n", f"must be >= 1, got {self.n}")
        require(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        require(self.top_k is None or self.top_k >= 1, "top_k", f"must be >= 1, got {self.top_k}")
        require(self.per_level >= 1, "per_level", "must be >= 1")
        require(self.n_levels_shown >= 1, "n_levels_shown", "must be >= 1")
        require(self.keep_rows >= 0, "keep_rows", "must be >= 0")
        require(self.n_generation_eval >= 0, "n_generation_eval", "must be >= 0")


def _default_prior_train() -> TrainConfig:
    # Small batches at a high rate: on the demo cohort, 4.5 CPU minutes at 8e-3 reached
    # validation NLL 2.72 bits per code with batch 16 and 3.01 with batch 32 (level accuracy
    # 0.73 and 0.56); batch 8 in the full demo pipeline reached level accuracy 0.84.
    return TrainConfig(epochs=10, lr=8e-3, batch_size=8)


@dataclass
class RunConfig:
    """Everything one pipeline run needs; saved as RUN/config.yaml."""

    data: DataConfig = field(default_factory=DataConfig)
    vqvae: VQVAEConfig = field(default_factory=VQVAEConfig)
    vqvae_train: TrainConfig = field(default_factory=TrainConfig)
    prior: PixelCNNConfig = field(default_factory=PixelCNNConfig)
    prior_train: TrainConfig = field(default_factory=_default_prior_train)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def validate(self) -> None:
        require(
            self.vqvae.image_size == self.data.size,
            "vqvae.image_size",
            f"must equal data.size ({self.data.size}), got {self.vqvae.image_size}",
        )
        require(
            self.prior.num_codes == self.vqvae.codebook_size,
            "prior.num_codes",
            f"must equal vqvae.codebook_size ({self.vqvae.codebook_size}), "
            f"got {self.prior.num_codes}",
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
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Defaults, then the YAML file at `path`, then `overrides` (nested dict); validated."""
    data = to_dict(RunConfig())
    if path is not None:
        data = merge(data, read_yaml(path))
    if overrides:
        data = merge(data, overrides)
    return from_dict(RunConfig, sync_derived(data))


def sync_derived(data: dict[str, Any]) -> dict[str, Any]:
    """Derive the keys that must agree: vqvae.image_size <- data.size, prior.num_codes <- K.

    They are derived rather than asked for, so a user who changes `data.size` or the codebook
    size in one place never meets a mismatch error."""
    data = merge(data, {})
    data["vqvae"] = dict(data["vqvae"], image_size=data["data"]["size"])
    data["prior"] = dict(data["prior"], num_codes=data["vqvae"]["codebook_size"])
    return data


def save_run_config(config: RunConfig, path: str | Path) -> Path:
    return atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
