"""Which configuration a training run starts from: a file given with --config, the run's own
config.yaml when it is continued, else the packaged configuration that measured best for the
machine brainvq finds (README: "Defaults that fit the machine")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def resolve_config_file(
    run_dir: Path, config_file: Path | None, source: str | None, prog: str
) -> tuple[Path | None, PresetInfo | None]:
    """The config file a training command starts from, and where it came from.

    A file given with --config is used as it is; a run being continued keeps its own
    config.yaml; otherwise brainvq picks the packaged config that fits this machine and says
    which and why (printed with `prog` in front, and recorded in RUN/config.yaml)."""
    if config_file is not None:
        return config_file, PresetInfo(str(config_file), "given with --config")
    if RunLayout(run_dir).config.is_file():
        return None, None
    preset = choose_preset(source or "demo")
    path = packaged_config(preset.name)
    print(f"{prog}: no --config given: using configs/{path.name} ({preset.reason})")
    return path, preset


def prepare_training_run(
    run_dir: str | Path,
    config_file: str | Path | None,
    source: str | None,
    overrides: dict[str, Any],
    prog: str,
) -> RunConfig:
    """Resolve a training run's config (resolve_config_file, then `overrides`: nested config
    keys), validate it and save it as RUN/config.yaml (brainvq.run.prepare_run)."""
    run_dir = Path(run_dir)
    path, preset = resolve_config_file(
        run_dir, None if config_file is None else Path(config_file), source, prog
    )
    return prepare_run(run_dir, path, overrides, preset=preset)
