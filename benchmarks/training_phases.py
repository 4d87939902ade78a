"""Where a training step's wall time goes, phase by phase and part by part, and what a real
Lightning fit adds around it (used by profile_training.py).

0. `profile_shares`: the share of self CPU time per kind of aten op (torch.profiler).

1. `phase_times`: a step as the trainer runs it, timed in phases (the forward pass split into
   the model's parts by forward hooks, the loss and the rest of the forward, backward, gradient
   clipping, the AdamW step). The parts: the VQ-VAE's encoder, quantizer and decoder; the
   prior's embedding and condition maps (level, position, the slice below), its masked
   convolutions (type A and the horizontal stacks' 1 x k), the vertical stacks' convolutions,
   the gated layers' 1x1 convolutions, the head; "rest of forward" is what no part holds
   (gates, residuals, padding, the loss).
2. `fit_times`: a real fit of the stage (brainvq's fit_vqvae / fit_prior, its Trainer, loggers,
   checkpoints and validation) for a few steps of one epoch: ms per step inside Lightning
   (batch start to the next batch start: the step, data, logging, callbacks), and the seconds
   of the validation epoch and of the epoch's end (checkpoints, history).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

from brainvq.models.pixelcnn import MaskedConv2d

OP_KINDS = (  # (kind, substrings of aten op names), first match wins
    ("convolution backward", ("convolution_backward",)),
    ("convolution forward", ("convolution", "conv2d", "mkldnn_conv")),
    ("matrix products", ("addmm", "::mm", "bmm", "matmul", "linear", "baddbmm")),
    ("optimiser", ("_foreach", "adam", "lerp", "addcdiv", "addcmul")),
    ("embedding / indexing", ("embedding", "index", "gather", "scatter", "take")),
    ("copies and layout", ("copy_", "contiguous", "clone", "to_copy", "permute", "cat", "stack")),
    (
        "reductions",
        ("sum", "mean", "norm", "argmin", "argmax", "max", "min", "softmax", "nll", "cross"),
    ),
    (
        "element-wise",
        (
            "add",
            "mul",
            "div",
            "sub",
            "relu",
            "threshold",
            "clamp",
            "sigmoid",
            "tanh",
            "pow",
            "sqrt",
            "exp",
            "log",
            "where",
            "fill",
            "zero",
            "mse",
            "neg",
            "rsub",
        ),
    ),
)


def op_kind(name: str) -> str:
    lower = name.lower()
    for kind, keys in OP_KINDS:
        if any(key in lower for key in keys):
            return kind
    return "other"


WARMUP = 3  # untimed steps first
GATED_1X1 = ("v_to_h", "h_out", "cond")
MAPS = ("embedding", "condition", "neighbour", "cond_in")


def part_of(stage: str, name: str, module: torch.nn.Module) -> str | None:
    """The part of the model that module `name` is timed as, or None (not hooked)."""
    if stage == "vqvae":
        return name if name in ("encoder", "quantizer", "decoder") else None
    if isinstance(module, MaskedConv2d):
        return "masked convolutions (type A, horizontal 1 x k)"
    leaf = name.rsplit(".", 1)[-1]
    if name.startswith("layers.") and leaf == "v_conv":
        return "vertical stack convolutions"
    if name.startswith("layers.") and leaf in GATED_1X1:
        return "gated layers' 1x1 convolutions"
    if name in MAPS:
        return "embedding, level/position and neighbour maps"
    if name == "head":
        return "head (1x1 convolutions to K logits)"
    return None


def hook_parts(stage: str, model: torch.nn.Module, totals: dict[str, float]) -> list:
    """Forward hooks that add each hooked module's wall seconds to totals[part]; the handles."""
    handles, starts = [], {}
    for name, module in model.named_modules():
        part = part_of(stage, name, module)
        if part is None:
            continue

        def before(mod, args) -> None:
            starts[id(mod)] = time.perf_counter()

        def after(mod, args, out, part=part) -> None:
            totals[part] = totals.get(part, 0.0) + time.perf_counter() - starts[id(mod)]

        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    return handles


def phase_times(
    stage: str,
    model: torch.nn.Module,
    loss: Callable[[], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    clip: float,
    dtype: torch.dtype | None,
    steps: int,
) -> dict[str, float]:
    """ms per step of every phase and forward part over `steps` steps (after 2 untimed)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    parts: dict[str, float] = {}
    phases = {"forward": 0.0, "backward": 0.0, "gradient clipping": 0.0, "optimiser step": 0.0}
    for i in range(steps + 2):
        if i == 2:
            handles = hook_parts(stage, model, parts)
            phases = dict.fromkeys(phases, 0.0)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            value = loss()
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        t2 = time.perf_counter()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        for key, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            phases[key] += seconds
    for handle in handles:
        handle.remove()
    rows = {f"forward: {part}": s for part, s in sorted(parts.items(), key=lambda kv: -kv[1])}
    rows["forward: rest (gates, residuals, padding, the loss)"] = phases["forward"] - sum(
        parts.values()
    )
    rows.update({k: v for k, v in phases.items() if k != "forward"})
    return {k: 1000 * v / steps for k, v in rows.items()}


class StepClock(L.Callback):
    """Wall times inside a fit: batch start to batch start, validation epochs, epoch ends."""

    def __init__(self) -> None:
        self.batch_starts: list[float] = []
        self.batch_cpu: list[float] = []
        self.validation: list[float] = []
        self.epoch_end: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.batch_starts.append(time.perf_counter())
        self.batch_cpu.append(time.process_time())

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._val = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self.validation.append(time.perf_counter() - self._val)
        self._end = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epoch_end.append(time.perf_counter() - self._end)

    def step_ms(self, clock: str = "wall") -> float:
        """Median ms (wall, or this process's CPU time) from one batch start to the next, the
        first two left out."""
        starts = self.batch_starts if clock == "wall" else self.batch_cpu
        gaps = [b - a for a, b in zip(starts[2:], starts[3:], strict=False)]
        return 1000 * statistics.median(gaps) if gaps else float("nan")


def fit_times(config, sliceset, steps: int) -> dict[str, dict[str, float]]:
    """Per stage: ms per step inside a real Lightning fit, and the seconds of one validation
    epoch and of the epoch's end, from a fit of `steps` steps (VQ-VAE, then the prior on its
    codes) in a temporary run folder."""
    from brainvq.training.fit_prior import fit_prior
    from brainvq.training.fit_vqvae import fit_vqvae

    out = {}
    with tempfile.TemporaryDirectory(prefix="brainvq-profile-") as tmp:
        run_dir = Path(tmp)
        for stage, fit in (("vqvae", fit_vqvae), ("prior", fit_prior)):
            train = getattr(config, f"{stage}_train")
            train.epochs, train.limit_train_batches, train.max_minutes = 1, steps + 3, None
            clock = StepClock()
            fit(run_dir, config, sliceset, callbacks=[clock], progress_bar=False)
            out[stage] = {
                "lightning ms / step": clock.step_ms(),
                "lightning CPU ms / step": clock.step_ms("cpu"),
                "validation epoch s": clock.validation[-1],
                "epoch end s (checkpoints, history)": clock.epoch_end[-1],
            }
    return out


def profile_shares(step: Callable[[], None], steps: int) -> tuple[dict[str, float], float]:
    """Share of self CPU time per op kind over `steps` steps, and the profiled total in s."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(WARMUP):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        if not event.key.startswith("aten::") and "Optimizer" not in event.key:
            continue
        kind = op_kind(event.key)
        totals[kind] = totals.get(kind, 0.0) + event.self_cpu_time_total
    total = sum(totals.values())
    return {k: v / total for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}, total / 1e6
