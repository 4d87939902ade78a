"""Which packaged configuration a run starts from when no --config is given: the one that
measured best for the machine brainvq finds (README: "Defaults that fit the machine")."""

from __future__ import annotations

from brainvq.hardware import ISA_NAMES, cpu_isa, usable_cores
from brainvq.run import PresetInfo


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
