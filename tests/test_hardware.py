"""The machine as brainvq sees it: ISA tiers, the limits of the PyTorch variables, threads."""

from __future__ import annotations

import pytest
import torch

from brainvq import hardware
from brainvq.run_config import TrainConfig
from brainvq.training.trainer import resolve_precision


@pytest.fixture
def no_limits(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "variable, value",
    [("ONEDNN_MAX_CPU_ISA", "AVX2"), ("ATEN_CPU_CAPABILITY", "avx2"), ("DNNL_MAX_CPU_ISA", "AVX2")],
)
def test_an_avx2_limit_turns_auto_into_fp32(no_limits, variable: str, value: str) -> None:
    no_limits.setenv(variable, value)
    assert hardware.ISA_TIERS.index(hardware.cpu_isa()) <= hardware.ISA_TIERS.index("avx2")
    assert not hardware.cpu_has_native_bf16()
    assert resolve_precision(TrainConfig(precision="auto", accelerator="cpu")) == "32"
    if hardware._hardware_tier() not in ("default", "neon", "avx2"):
        assert hardware.machine().isa_limited_by == f"{variable}={value}"


def test_the_narrower_of_two_limits_wins(no_limits) -> None:
    no_limits.setenv("ATEN_CPU_CAPABILITY", "avx512")
    no_limits.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert hardware.isa_limit() == ("avx2", "ONEDNN_MAX_CPU_ISA=AVX2")
    no_limits.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    no_limits.setenv("ATEN_CPU_CAPABILITY", "default")
    assert hardware.isa_limit() == ("default", "ATEN_CPU_CAPABILITY=default")


def test_a_limit_never_widens_the_hardware(no_limits) -> None:
    bare = hardware.cpu_isa()
    no_limits.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert hardware.cpu_isa() == bare
    assert hardware.machine().isa_limited_by is None


def test_without_limits_auto_follows_the_hardware(no_limits) -> None:
    native = hardware._hardware_tier() in hardware.NATIVE_BF16_TIERS
    assert hardware.cpu_has_native_bf16() is native
    expected = "bf16-mixed" if native else "32"
    assert resolve_precision(TrainConfig(precision="auto", accelerator="cpu")) == expected


@pytest.mark.parametrize("variable", ["ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"])
def test_an_unknown_limit_is_an_error_naming_the_variable(no_limits, variable: str) -> None:
    no_limits.setenv(variable, "avx3000")
    with pytest.raises(ValueError, match=f"{variable}='avx3000': expected one of"):
        hardware.cpu_isa()


def test_machine_line_names_cpu_isa_threads_and_torch(no_limits) -> None:
    line = hardware.machine().describe()
    assert hardware.cpu_model() in line
    assert hardware.ISA_NAMES[hardware.cpu_isa()] in line
    assert f"{torch.get_num_threads()} torch threads" in line
    assert f"torch {torch.__version__}" in line


def test_set_threads_sets_and_refuses_nonsense() -> None:
    before = torch.get_num_threads()
    try:
        assert hardware.set_threads(1) == 1 and torch.get_num_threads() == 1
        assert hardware.set_threads(None) == hardware.usable_cores()
        for bad in (0, -2, True):
            with pytest.raises(ValueError, match="threads: expected an integer >= 1"):
                hardware.set_threads(bad)
    finally:
        torch.set_num_threads(before)
