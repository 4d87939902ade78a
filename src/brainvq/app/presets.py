"""Which configuration a training run starts from: a file given with --config, the run's own
config.yaml when it is continued, else the packaged configuration that measured best for the
machine brainvq finds (docs/hardware.md: "Defaults that fit the machine").

A picked config is said by the command that trains (`ConfigChoice.note`, printed with the
command's name in front) and recorded in RUN/config.yaml (`preset`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from brainvq.hardware import ISA_NAMES, cpu_isa, usable_cores
from brainvq.run import RunLayout, packaged_config, prepare_run
from brainvq.run_config import PresetInfo, RunConfig


def choose_preset(source: str) -> PresetInfo:
    """The packaged config for `source` on this machine, and why it was chosen."""
    import torch

    if source == "demo":
        return PresetInfo("demo", "the demo cohort: the main job's own configuration")
    if torch.cuda.is_available():
        return PresetInfo(
            "oasis",
            f"a CUDA GPU ({torch.cuda.get_device_name(0)}): the GPU configuration, widths "
            "(64, 128), batch 64, bf16-mixed",
        )
    return PresetInfo(
        "oasis_cpu",
        f"no CUDA GPU; {usable_cores()} CPU cores with {ISA_NAMES[cpu_isa()]}: the CPU "
        "configuration, widths (32, 64), batch 16, which reached higher validation SSIM than "
        "the narrower package defaults in the same CPU minutes on OASIS",
    )


@dataclass(frozen=True)
class ConfigChoice:
    """The config file a training command starts from and where it came from: path None and
    preset None for a run being continued (its own config.yaml); picked: brainvq chose the
    packaged config (no --config given), which the command says (`note`)."""

    path: Path | None
    preset: PresetInfo | None
    picked: bool = False

    @property
    def note(self) -> str | None:
        """Which packaged config brainvq picked and why; None when it picked none."""
        if not self.picked or self.path is None or self.preset is None:
            return None
        return f"no --config given: using configs/{self.path.name} ({self.preset.reason})"


class StartingConfig(NamedTuple):
    """A training run's validated config, and the note its command shows (ConfigChoice.note)."""

    config: RunConfig
    note: str | None


def resolve_config_file(
    run_dir: Path, config_file: Path | None, source: str | None
) -> ConfigChoice:
    """The config file a training command starts from, and where it came from.

    A file given with --config is used as it is; a run being continued keeps its own
    config.yaml; otherwise brainvq picks the packaged config that fits this machine."""
    if config_file is not None:
        return ConfigChoice(config_file, PresetInfo(str(config_file), "given with --config"))
    if RunLayout(run_dir).config.is_file():
        return ConfigChoice(None, None)
    preset = choose_preset(source or "demo")
    return ConfigChoice(packaged_config(preset.name), preset, picked=True)


def prepare_training_run(
    run_dir: str | Path,
    config_file: str | Path | None,
    source: str | None,
    overrides: dict[str, Any],
) -> StartingConfig:
    """Resolve a training run's config (resolve_config_file, then `overrides`: nested config
    keys), validate it and save it as RUN/config.yaml (brainvq.run.prepare_run)."""
    run_dir = Path(run_dir)
    choice = resolve_config_file(
        run_dir, None if config_file is None else Path(config_file), source
    )
    config = prepare_run(run_dir, choice.path, overrides, preset=choice.preset)
    return StartingConfig(config, choice.note)
