"""What machine this is: the CPU and its vector ISA, native bf16, GPUs, and the thread policy.

`cpu_isa()` is the widest instruction set PyTorch's CPU kernels may use here. It is what the
hardware offers, limited by the two variables that limit PyTorch itself:
`ATEN_CPU_CAPABILITY` (ATen's vectorised kernels: default, avx2, avx512) and
`ONEDNN_MAX_CPU_ISA` (oneDNN's convolutions and matrix products: AVX2, AVX512_CORE,
AVX512_CORE_BF16, AVX512_CORE_AMX, ...). Setting both to AVX2 makes a CPU with AVX-512 and
AMX compute, and `precision: auto` choose, as an AVX2-only CPU does.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

# From narrowest to widest; each tier has everything of the ones before it.
ISA_TIERS = ("default", "neon", "avx2", "avx512", "avx512_bf16", "amx")
NATIVE_BF16_TIERS = ("avx512_bf16", "amx")
ISA_NAMES = {
    "default": "no vector ISA",
    "neon": "NEON",
    "avx2": "AVX2",
    "avx512": "AVX-512",
    "avx512_bf16": "AVX-512 + BF16",
    "amx": "AVX-512 + AMX (bf16)",
}
# ONEDNN_MAX_CPU_ISA values (oneDNN's documented names) -> the tier they allow at most.
ONEDNN_LIMITS = {
    "SSE41": "default",
    "AVX": "default",
    "AVX2": "avx2",
    "AVX2_VNNI": "avx2",
    "AVX2_VNNI_2": "avx2",
    "AVX512_CORE": "avx512",
    "AVX512_CORE_VNNI": "avx512",
    "AVX512_CORE_BF16": "avx512_bf16",
    "AVX10_1_512": "avx512_bf16",
    "AVX512_CORE_FP16": "avx512_bf16",
    "AVX512_CORE_AMX": "amx",
    "AVX10_1_512_AMX": "amx",
    "AVX512_CORE_AMX_FP16": "amx",
    "AVX10_1_512_AMX_FP16": "amx",
    "ALL": "amx",
    "DEFAULT": "amx",
}
# ATEN_CPU_CAPABILITY values -> the tier they allow at most (it has no bf16/AMX level: ATen's
# kernels stop at AVX-512, while bf16 matrix products go through oneDNN).
ATEN_LIMITS = {"default": "default", "avx2": "avx2", "avx512": "amx", "zvector": "default"}


def _hardware_tier() -> str:
    """The widest tier the CPU itself supports (ignoring any limits)."""
    cpu = torch.backends.cpu
    capability = cpu.get_cpu_capability().lower() if hasattr(cpu, "get_cpu_capability") else ""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "neon"
    has = {
        name: getattr(torch.cpu, f"_is_{name}_supported", lambda: False)()
        for name in ("amx_tile", "avx512_bf16", "avx512", "avx2")
    }
    if has["amx_tile"]:
        return "amx"
    if has["avx512_bf16"]:
        return "avx512_bf16"
    if has["avx512"] or capability.startswith("avx512"):
        return "avx512"
    if has["avx2"] or capability == "avx2":
        return "avx2"
    return "default"


def isa_limit() -> tuple[str, str] | None:
    """(tier, why) when ATEN_CPU_CAPABILITY or ONEDNN_MAX_CPU_ISA narrows the kernels, else None.

    Raises ValueError naming the variable when its value is not one PyTorch knows."""
    limits = []
    aten = os.environ.get("ATEN_CPU_CAPABILITY")
    if aten:
        if aten.lower() not in ATEN_LIMITS:
            raise ValueError(f"ATEN_CPU_CAPABILITY={aten!r}: expected one of {sorted(ATEN_LIMITS)}")
        limits.append((ATEN_LIMITS[aten.lower()], f"ATEN_CPU_CAPABILITY={aten}"))
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):  # oneDNN reads either
        onednn = os.environ.get(name)
        if not onednn:
            continue
        if onednn.upper() not in ONEDNN_LIMITS:
            raise ValueError(f"{name}={onednn!r}: expected one of {sorted(ONEDNN_LIMITS)}")
        limits.append((ONEDNN_LIMITS[onednn.upper()], f"{name}={onednn}"))
    if not limits:
        return None
    return min(limits, key=lambda limit: ISA_TIERS.index(limit[0]))


def cpu_isa() -> str:
    """The widest tier of ISA_TIERS that PyTorch's CPU kernels may use in this process."""
    tier = _hardware_tier()
    limit = isa_limit()
    if limit is not None and ISA_TIERS.index(limit[0]) < ISA_TIERS.index(tier):
        return limit[0]
    return tier


def cpu_has_native_bf16() -> bool:
    """Whether bf16 matrix products run in hardware here (AVX512-BF16 or AMX, not limited)."""
    return cpu_isa() in NATIVE_BF16_TIERS


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else the platform's name for it)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Machine:
    """One line's worth of what a number was measured on."""

    cpu: str
    isa: str
    isa_limited_by: str | None
    cores: int
    threads: int
    torch_version: str
    gpu: str | None

    def describe(self) -> str:
        limited = f", limited by {self.isa_limited_by}" if self.isa_limited_by else ""
        gpu = f"; GPU {self.gpu}" if self.gpu else "; no GPU"
        return (
            f"CPU {self.cpu} ({ISA_NAMES[self.isa]}{limited}), {self.cores} cores, "
            f"{self.threads} torch threads; torch {self.torch_version}{gpu}"
        )


def machine() -> Machine:
    """The machine this process runs on, as PyTorch sees it now."""
    limit = isa_limit()
    isa = cpu_isa()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return Machine(
        cpu=cpu_model(),
        isa=isa,
        isa_limited_by=limit[1] if limit and isa != _hardware_tier() else None,
        cores=usable_cores(),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        gpu=gpu,
    )


def set_threads(threads: int | None) -> int:
    """Use `threads` intra-op threads (None: one per usable core); returns the number set.

    Call before the first parallel op: PyTorch fixes its inter-op pool once it has run."""
    if threads is not None and (isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads: expected an integer >= 1 or None, got {threads!r}")
    n = threads or usable_cores()
    torch.set_num_threads(n)
    return n


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit systems)
MMAP_THRESHOLD_MAX = 32 * 2**20


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS.

    By default glibc serves big blocks (a training step's activations are MBs) by mmap and
    gives freed memory back by trimming the heap, so every step faults the same pages in
    again: on a 2-core CPU about 16,000 minor page faults and a tenth of the CPU time per
    VQ-VAE step went to the kernel (benchmarks/profile_training.py). With trimming off and
    blocks up to 32 MiB kept in the heap, the faults vanish. The process keeps its peak memory.
    Returns whether the settings were applied (glibc on Linux; elsewhere nothing is done)."""
    import ctypes
    import ctypes.util

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    trimmed = libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1))
    mapped = libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(MMAP_THRESHOLD_MAX))
    return bool(trimmed and mapped)
