"""VQ-VAE speed, memory and FLOP utilisation at 128x128: training and inference throughput.

Builds the VQ-VAE of a run config (default: the packaged demo config) at 128x128 with random
weights and measures, on the chosen device, precision and thread count:

1. training: images/s of full steps (forward, the trainer's loss, backward, gradient clipping as
   the config's trainer does, AdamW step), median over timed windows after warm-up steps (the
   first one runs the k-means codebook init), and the peak memory of that phase (CUDA:
   torch.cuda.max_memory_allocated; CPU: growth of the process's peak resident set, VmHWM,
   over its resident set at the start of the phase, with the peak reset first);
2. inference: images/s of `encode` and of `decode_indices`, separately, batch 64;
3. FLOPs: one training step (forward + backward) counted by FlopCounterMode, divided by the
   measured step time, against a timed square matmul in the compute dtype on the same device
   and threads -> utilisation.

The images are demo-cohort slices (a few virtual subjects, cached after the first run) held
on the device, so data loading is not part of the timings (benchmarks/bench_data.py measures
that).

    .venv/bin/python benchmarks/bench_vqvae.py [--config demo|PATH.yaml] [--device cpu|cuda]
        [--precision auto|32|bf16-mixed|16-mixed] [--memory-format config|channels_last|contiguous]
        [--batch-size 32] [--threads N]
        [--matmul-size N] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from brainvq.data import load_slices
from brainvq.hardware import machine, set_threads
from brainvq.models.vqvae import VQVAE
from brainvq.run import packaged_config
from brainvq.run_config import PRECISIONS, RunConfig, TrainConfig, load_run_config
from brainvq.training.trainer import resolve_precision
from brainvq.training.vqvae_module import VQVAEModule

IMAGE_SIZE = 128
INFER_BATCH = 64
DEMO_SUBJECTS = (2, 1, 1)  # 128 slices: enough distinct batches, a second or two once cached
N_BATCHES = 4  # distinct training batches cycled through, drawn from the slices
SEED = 0
AUTOCAST_DTYPES = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class Repeats:
    """How many steps and calls each measurement runs."""

    warmup_steps: int
    windows: int
    steps_per_window: int
    infer_calls: int
    matmul_calls: int


FULL = Repeats(warmup_steps=5, windows=5, steps_per_window=5, infer_calls=5, matmul_calls=10)
QUICK = Repeats(warmup_steps=1, windows=2, steps_per_window=1, infer_calls=2, matmul_calls=2)


def resolve_config(name_or_path: str) -> tuple[RunConfig, str]:
    """A packaged config name or a YAML path -> (the run config at 128x128, its label)."""
    path = Path(name_or_path)
    if not path.is_file():
        if path.suffix or len(path.parts) > 1:
            raise FileNotFoundError(f"no config file at {path}")
        path = packaged_config(name_or_path)
    config = load_run_config(path, overrides={"data": {"size": IMAGE_SIZE}})
    return config, path.stem


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    dtype = AUTOCAST_DTYPES[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def _proc_status_mb(key: str) -> float:
    """A memory line of /proc/self/status (e.g. VmHWM, VmRSS) in MB."""
    for line in PROC_STATUS.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024  # the kernel reports kB
    raise ValueError(f"{PROC_STATUS} has no {key!r} line")


@contextmanager
def peak_memory(device: torch.device, result: dict[str, float | None]) -> Iterator[None]:
    """Record the phase's peak memory in MB as result["peak_mb"] (None where unmeasurable).

    CUDA: max_memory_allocated after a reset. CPU: VmHWM - VmRSS at the start, after resetting
    VmHWM to the current RSS by writing 5 to /proc/self/clear_refs (Linux >= 4.0); without
    /proc the peak is not measured, rather than reported from an earlier phase.
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield
        synchronize(device)
        result["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        return
    try:
        PROC_CLEAR_REFS.write_text("5")
        start = _proc_status_mb("VmRSS")
    except OSError:
        result["peak_mb"] = None
        yield
        return
    yield
    result["peak_mb"] = _proc_status_mb("VmHWM") - start


def demo_images(n: int, device: torch.device, channels_last: bool) -> list[torch.Tensor]:
    """N_BATCHES batches of n demo-cohort slices, each (n, 1, 128, 128) float in [0, 1]."""
    slices = load_slices("demo", size=IMAGE_SIZE, demo_subjects=DEMO_SUBJECTS, progress=False)
    rng = np.random.default_rng(SEED)
    batches = []
    for _ in range(N_BATCHES):
        picked = slices.images[rng.choice(len(slices), size=n, replace=n > len(slices))]
        x = torch.from_numpy(picked.astype(np.float32) / 255.0)[:, None]  # (n, 1, 128, 128)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        batches.append(x.to(device).contiguous(memory_format=memory_format))
    return batches


def make_train_step(
    module: VQVAEModule, train: TrainConfig, device: torch.device, precision: str
) -> Callable[[torch.Tensor], None]:
    """One optimisation step as the trainer runs it, with the trainer's loss
    (MSE + ssim_weight x (1 - SSIM) + VQ loss)."""
    model = module.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")

    def step(x: torch.Tensor) -> None:
        with autocast(device, precision):
            loss = module.losses(x)[0]["loss"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if train.gradient_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.gradient_clip)
        scaler.step(optimizer)
        scaler.update()

    return step


def median_seconds(fn: Callable[[], object], calls: int, device: torch.device) -> float:
    """Median wall seconds of `calls` calls of fn, each synchronised on CUDA."""
    times = []
    for _ in range(calls):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_training(
    module: VQVAEModule, config: RunConfig, batches: list[torch.Tensor], args: argparse.Namespace
) -> dict[str, float | None]:
    """Train img/s, seconds per step, peak MB and FLOPs of one step (forward + backward)."""
    device, repeats = torch.device(args.device), args.repeats
    result: dict[str, float | None] = {}
    with peak_memory(device, result):
        module.to(device).train()  # channels_last weights already when the config says so
        step = make_train_step(module, config.vqvae_train, device, args.precision)
        for i in range(repeats.warmup_steps):
            step(batches[i % len(batches)])
        cursor = iter(range(repeats.windows * repeats.steps_per_window))

        def window() -> None:
            for _ in range(repeats.steps_per_window):
                step(batches[next(cursor) % len(batches)])

        window_s = median_seconds(window, repeats.windows, device)
    step_s = window_s / repeats.steps_per_window
    counter = FlopCounterMode(display=False)
    with counter:
        step(batches[0])
    return {
        **result,
        "step_s": step_s,
        "train_img_s": args.batch_size / step_s,
        "step_flops": float(counter.get_total_flops()),
    }


def bench_inference(
    model: VQVAE, images: torch.Tensor, args: argparse.Namespace
) -> dict[str, float]:
    """Images/s of encode and of decode_indices at batch len(images), in inference mode."""
    device, calls = torch.device(args.device), args.repeats.infer_calls
    with torch.inference_mode(), autocast(device, args.precision):
        indices = model.encode(images)  # (B, 32, 32): also the warm-up call
        model.decode_indices(indices)
        encode_s = median_seconds(lambda: model.encode(images), calls, device)
        decode_s = median_seconds(lambda: model.decode_indices(indices), calls, device)
    n = images.shape[0]
    return {"encode_img_s": n / encode_s, "decode_img_s": n / decode_s}


def bench_matmul(args: argparse.Namespace) -> tuple[float, torch.dtype]:
    """FLOP/s of an n x n matmul in the compute dtype of --precision, median of the calls."""
    device, n = torch.device(args.device), args.matmul_size
    dtype = AUTOCAST_DTYPES[args.precision] or torch.float32
    generator = torch.Generator(device=device).manual_seed(SEED)
    a, b = (torch.randn(n, n, generator=generator, device=device, dtype=dtype) for _ in range(2))
    torch.mm(a, b)  # warm-up: kernel choice, workspace
    seconds = median_seconds(lambda: torch.mm(a, b), args.repeats.matmul_calls, device)
    return 2 * n**3 / seconds, dtype


def check_args(args: argparse.Namespace) -> str | None:
    """The reason the arguments cannot run here, or None."""
    if args.device == "cuda" and not torch.cuda.is_available():
        return "--device cuda: no CUDA device is available (torch sees none); use --device cpu"
    if args.device == "cpu" and args.precision == "16-mixed":
        return "--precision 16-mixed needs --device cuda; on the CPU use 32 or bf16-mixed"
    for name in ("batch_size", "threads", "matmul_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return f"--{name.replace('_', '-')} must be >= 1, got {value}"
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="demo", help="packaged config name or YAML path")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--precision", default="auto", choices=PRECISIONS, help="auto: as training resolves it"
    )
    parser.add_argument(
        "--memory-format",
        default="config",
        choices=("config", "channels_last", "contiguous"),
        help="config: as training uses it (channels_last by default)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--matmul-size", type=int, default=None, help="matmul side (default 2048 CPU, 8192 CUDA)"
    )
    parser.add_argument("--quick", action="store_true", help="few steps: a smoke run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = check_args(args)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    if args.threads is not None:
        set_threads(args.threads)
    args.precision = resolve_precision(
        TrainConfig(precision=args.precision, accelerator=args.device)
    )
    if args.matmul_size is None:
        args.matmul_size = 8192 if args.device == "cuda" else 2048
    args.repeats = QUICK if args.quick else FULL
    try:
        config, label = resolve_config(args.config)
    except (FileNotFoundError, ValueError) as error:  # ConfigError is a ValueError
        print(f"--config {args.config}: {error}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if args.memory_format != "config":
        config.vqvae_train.channels_last = args.memory_format == "channels_last"
    args.channels_last = config.vqvae_train.channels_last

    torch.manual_seed(SEED)
    module = VQVAEModule(config.vqvae, config.vqvae_train)
    model = module.model
    batches = demo_images(args.batch_size, device, args.channels_last)
    train = bench_training(module, config, batches, args)
    infer_images = demo_images(INFER_BATCH, device, args.channels_last)[0]
    infer = bench_inference(model, infer_images, args)
    matmul_flops, matmul_dtype = bench_matmul(args)

    achieved = train["step_flops"] / train["step_s"]
    peak = train["peak_mb"]
    gpu = f"; device cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    params = sum(p.numel() for p in model.parameters())
    print(f"# {machine().describe()}{gpu}; precision {args.precision}")
    print(f"{params:,} parameters, VQVAEConfig {config.vqvae}")
    print(
        f"train step {train['step_s'] * 1e3:.1f} ms (median of {args.repeats.windows} windows x "
        f"{args.repeats.steps_per_window} steps after {args.repeats.warmup_steps} warm-up), "
        f"{train['step_flops'] / 1e9:.2f} GFLOP/step (forward + backward), "
        f"matmul {args.matmul_size}x{args.matmul_size} {str(matmul_dtype).removeprefix('torch.')}"
        + (" (quick run: few repeats, rough numbers)" if args.quick else "")
    )
    if device.type == "cuda":
        print(
            f"TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, "
            f"cuDNN conv {torch.backends.cudnn.allow_tf32}"
        )
    table = Table(title=f"brainvq VQ-VAE benchmark ({IMAGE_SIZE}x{IMAGE_SIZE})")
    row = {
        "config": label,
        "device": args.device + (" CL" if args.channels_last else ""),
        "precision": args.precision,
        "batch": str(args.batch_size),
        "train img/s": f"{train['train_img_s']:.1f}",
        "peak MB": "n/a" if peak is None else f"{peak:.0f}",
        f"encode img/s (b{INFER_BATCH})": f"{infer['encode_img_s']:.1f}",
        f"decode img/s (b{INFER_BATCH})": f"{infer['decode_img_s']:.1f}",
        "GFLOP/img (train)": f"{train['step_flops'] / args.batch_size / 1e9:.3f}",
        "achieved GFLOP/s": f"{achieved / 1e9:.1f}",
        "matmul GFLOP/s": f"{matmul_flops / 1e9:.1f}",
        "utilisation": f"{achieved / matmul_flops:.1%}",
    }
    for column in row:
        table.add_column(column, justify="left" if column == "config" else "right")
    table.add_row(*row.values())
    Console(width=180).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
