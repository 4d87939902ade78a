"""Structured channel pruning of a VQ-VAE (L1 norm of the filters), and its fine-tuning.

What can go, and what must stay: the image channels and the code (code_dim, the codebook) stay,
so the pruned model reads and writes the same images and codes and an existing prior still
models its code maps. Everything in between is prunable, in coupled groups whose channels go
together:

- encoder.stage{s}: the output channels of the s-th stride-2 convolution;
- encoder.stream: the residual stream (the 3x3 convolution's outputs and every residual
  block's 1x1 outputs, read by the blocks and the final projection);
- encoder.res{b}, decoder.res{b}: the hidden channels of residual block b;
- decoder.stream: the decoder's residual stream (from its first 3x3 convolution to the first
  transposed convolution);
- decoder.stage{k}: the output channels of the k-th stride-2 transposed convolution (all but
  the last, which makes the image).

Each group keeps its channels with the largest L1 norm of the filters that produce them (Li et
al., 2017, "Pruning Filters for Efficient ConvNets"), summed over the group's producers. A small
own pass rather than a dependency-graph library (torch-pruning): the architecture is fixed and
known, the plan below names every coupled group, and the result must be a VQVAEConfig that
rebuilds the model from a bundle. VQVAEConfig has one width per stage (shared by encoder and
decoder) and one res_channels, so every group keeps round((1 - amount) x its width) channels:
the widths stay uniform and the bundle loads as any other; which channels are kept is chosen
per group.

Fine-tuning trains the pruned model with the VQ-VAE's own loss (VQVAEModule) with the codebook
frozen: the prior was trained on indices into this codebook, and EMA updates or dead-code
restarts would move or re-seed codes under it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from brainvq.data.augment import AugmentConfig
from brainvq.data.dataset import SliceDataModule
from brainvq.data.sliceset import SliceSet
from brainvq.io.bundle import save_bundle
from brainvq.models.discriminator import AdversarialConfig
from brainvq.models.vqvae import VQVAE, VQVAEConfig
from brainvq.run import RunLayout
from brainvq.run_config import RunConfig, TrainConfig
from brainvq.training.callbacks import ReconstructionFrames
from brainvq.training.fit_vqvae import frame_slices
from brainvq.training.trainer import finish_bundle, fit_stage, steps_per_epoch
from brainvq.training.vqvae_module import VQVAEModule

# Fine-tuning stops at its minute budget, not at an epoch count, and its learning rate anneals
# with the clock (the step count it is given is never reached).
FINETUNE_EPOCHS = 1_000_000
# The fine-tuning learning rate, as a share of the run's: the pruned model starts near a solution.
FINETUNE_LR_SCALE = 0.1
# weight of the latent distillation term: the pruned encoder's latents are pulled towards the
# source encoder's (MSE, the scale of the commitment term), so that it picks the source's codes
# and the source run's prior still fits them
DISTILL_WEIGHT = 1.0


@dataclass(frozen=True)
class Layer:
    """How one module's channels map onto the groups: None is a dimension that stays."""

    kind: str  # "conv" (weight (out, in, k, k)), "convT" (weight (in, out, k, k)) or "norm"
    inputs: str | None
    outputs: str | None


@dataclass(frozen=True)
class PruneResult:
    """A pruned VQ-VAE and what was removed.

    groups: name -> (channels before, channels kept); prunable: the sums over the groups.
    """

    model: VQVAE
    config: VQVAEConfig
    amount: float
    groups: dict[str, tuple[int, int]]

    @property
    def prunable_before(self) -> int:
        return sum(before for before, _ in self.groups.values())

    @property
    def prunable_after(self) -> int:
        return sum(after for _, after in self.groups.values())

    @property
    def removed_fraction(self) -> float:
        return 1.0 - self.prunable_after / self.prunable_before


def _residual(plan: dict[str, Layer], prefix: str, stream: str, hidden: str) -> None:
    """ResidualBlock.body: norm, ReLU, conv3x3 (stream -> hidden), norm, ReLU, dropout, conv1x1."""
    plan[f"{prefix}.body.0"] = Layer("norm", None, stream)
    plan[f"{prefix}.body.2"] = Layer("conv", stream, hidden)
    plan[f"{prefix}.body.3"] = Layer("norm", None, hidden)
    plan[f"{prefix}.body.6"] = Layer("conv", hidden, stream)


def channel_plan(config: VQVAEConfig) -> tuple[dict[str, Layer], dict[str, int]]:
    """Every encoder/decoder module with weights (by its state-dict prefix) and the groups its
    channels belong to, following the layer order of models.vqvae.Encoder and Decoder; and each
    group's width in `config`."""
    plan: dict[str, Layer] = {}
    widths: dict[str, int] = {}
    blocks = config.res_blocks
    previous, i = None, 0
    for s, width in enumerate(config.channels):  # [conv, norm, ReLU] per stage
        group = f"encoder.stage{s}"
        plan[f"encoder.layers.{i}"] = Layer("conv", previous, group)
        plan[f"encoder.layers.{i + 1}"] = Layer("norm", None, group)
        widths[group], previous, i = width, group, i + 3
    plan[f"encoder.layers.{i}"] = Layer("conv", previous, "encoder.stream")
    i += 1
    for b in range(blocks):
        _residual(plan, f"encoder.layers.{i + b}", "encoder.stream", f"encoder.res{b}")
    i += blocks
    plan[f"encoder.layers.{i}"] = Layer("norm", None, "encoder.stream")
    plan[f"encoder.layers.{i + 2}"] = Layer("conv", "encoder.stream", None)  # -> code_dim
    plan["decoder.layers.0"] = Layer("conv", None, "decoder.stream")
    for b in range(blocks):
        _residual(plan, f"decoder.layers.{1 + b}", "decoder.stream", f"decoder.res{b}")
    i = 1 + blocks
    plan[f"decoder.layers.{i}"] = Layer("norm", None, "decoder.stream")
    previous, i = "decoder.stream", i + 2
    for k, width in enumerate(reversed(config.channels[:-1])):  # [convT, norm, ReLU] per stage
        group = f"decoder.stage{k}"
        plan[f"decoder.layers.{i}"] = Layer("convT", previous, group)
        plan[f"decoder.layers.{i + 1}"] = Layer("norm", None, group)
        widths[group], previous, i = width, group, i + 3
    plan[f"decoder.layers.{i}"] = Layer("convT", previous, None)  # -> the image
    for part in ("encoder", "decoder"):
        widths[f"{part}.stream"] = config.channels[-1]
        widths |= {f"{part}.res{b}": config.res_channels for b in range(blocks)}
    return plan, widths


def kept_width(width: int, amount: float) -> int:
    """Channels a group of `width` keeps at pruning `amount`: round((1 - amount) * width), >= 1."""
    return max(1, round((1.0 - amount) * width))


def _importance(model: VQVAE, plan: dict[str, Layer], widths: dict[str, int]) -> dict[str, Tensor]:
    """Per group: the L1 norm of each channel's filters, summed over the group's producers."""
    scores = {group: torch.zeros(width) for group, width in widths.items()}
    modules = dict(model.named_modules())
    for prefix, layer in plan.items():
        if layer.kind == "norm" or layer.outputs is None:
            continue
        weight = modules[prefix].weight.detach().float().abs()
        dims = (1, 2, 3) if layer.kind == "conv" else (0, 2, 3)
        scores[layer.outputs] += weight.sum(dims)
    return scores


def _slice(value: Tensor, layer: Layer, name: str, keep: dict[str, Tensor]) -> Tensor:
    """A tensor of a planned module with only the kept channels of its groups."""
    if layer.kind == "norm":  # weight, bias, running_mean, running_var: (C,)
        return value if value.dim() == 0 else value[keep[layer.outputs]]
    out_dim, in_dim = (0, 1) if layer.kind == "conv" else (1, 0)
    if name == "bias":
        return value if layer.outputs is None else value[keep[layer.outputs]]
    if layer.outputs is not None:
        value = value.index_select(out_dim, keep[layer.outputs])
    if layer.inputs is not None:
        value = value.index_select(in_dim, keep[layer.inputs])
    return value


def prune_vqvae(model: VQVAE, amount: float) -> PruneResult:
    """Structured L1-norm pruning of `model`'s encoder and decoder (see the module docstring).

    amount in [0, 1): the share of each group's channels to remove. Returns the pruned model
    (a new VQVAE in eval mode; `model` is not changed) with the same quantizer and codebook.
    """
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 <= amount < 1:
        raise ValueError(f"amount: expected a number in [0, 1), got {amount!r}")
    cfg = model.config
    plan, widths = channel_plan(cfg)
    state = model.state_dict()
    planned = {key for key in state if key.rsplit(".", 1)[0] in plan}
    unplanned = [k for k in state if k.startswith(("encoder.", "decoder.")) and k not in planned]
    if unplanned:
        raise RuntimeError(
            f"the pruning plan does not cover {unplanned[:3]}: models.vqvae changed its layers "
            "and training.pruning.channel_plan must follow"
        )
    scores = _importance(model, plan, widths)
    keep = {
        group: score.topk(kept_width(widths[group], amount)).indices.sort().values
        for group, score in scores.items()
    }
    new_cfg = replace(
        cfg,
        channels=tuple(kept_width(c, amount) for c in cfg.channels),
        res_channels=kept_width(cfg.res_channels, amount),
    )
    pruned = VQVAE(new_cfg)
    new_state = {}
    for key, value in state.items():
        prefix, name = key.rsplit(".", 1)
        layer = plan.get(prefix)
        new_state[key] = value if layer is None else _slice(value, layer, name, keep).clone()
    pruned.load_state_dict(new_state, strict=True)
    groups = {g: (widths[g], len(keep[g])) for g in widths}
    return PruneResult(model=pruned.eval(), config=new_cfg, amount=float(amount), groups=groups)


def model_cost(model: VQVAE) -> dict[str, float]:
    """Parameters, and MFLOPs (2 x multiply-adds) of encode + decode of one image."""
    cfg = model.config
    x = torch.zeros(1, cfg.in_channels, cfg.image_size, cfg.image_size)
    counter = FlopCounterMode(display=False)
    with counter:
        model.decode_indices(model.encode(x))
    return {
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "mflops": counter.get_total_flops() / 1e6,
    }


class FrozenCodebookModule(VQVAEModule):
    """VQVAEModule whose codebook does not move: the quantizer runs in eval mode during training
    (no EMA update, no k-means, no restarts) and a learned codebook gets no gradient; the loss
    (reconstruction + beta x commitment) and its straight-through gradient are unchanged.

    With a `teacher` (the unpruned source model), the loss gains distill_weight x the MSE
    between this model's latents and the teacher's for the same images (logged as `distill`):
    pruning changes which code the encoder picks for a latent, and the prior of the source run
    was trained on the source's codes. The teacher is frozen and not part of the module's
    state (it is neither trained nor checkpointed)."""

    def __init__(
        self,
        model: VQVAE,
        train_config: TrainConfig,
        augment: AugmentConfig | None = None,
        total_steps: int = 1000,
        adversarial: AdversarialConfig | None = None,
        teacher: VQVAE | None = None,
        distill_weight: float = DISTILL_WEIGHT,
    ) -> None:
        super().__init__(model.config, train_config, augment, total_steps, adversarial)
        self.model.load_state_dict(model.state_dict())
        self.model.quantizer.requires_grad_(False)
        if not distill_weight >= 0:
            raise ValueError(f"distill_weight: expected a number >= 0, got {distill_weight!r}")
        if teacher is not None:
            if teacher.config.code_dim != model.config.code_dim or not torch.equal(
                teacher.quantizer.codebook, model.quantizer.codebook
            ):
                raise ValueError("teacher: expected the source model of this pruned model")
            teacher = teacher.eval().requires_grad_(False)
        self._teacher = (teacher,)  # a tuple: not registered as a submodule
        self.distill_weight = distill_weight

    def losses(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor, Any]:
        teacher = self._teacher[0]
        if teacher is None or self.distill_weight == 0:
            return super().losses(x)
        latents: list[Tensor] = []
        hook = self.model.quantizer.register_forward_hook(
            lambda _module, args, _out: latents.append(args[0])  # the encoder's latents
        )
        try:
            losses, x_hat, vq = super().losses(x)
        finally:
            hook.remove()
        with torch.no_grad():
            teacher.to(x.device)
            target = teacher.encoder(x.float().contiguous())  # (B, D, h, w)
        distill = torch.nn.functional.mse_loss(latents[0].float(), target.float())
        losses["distill"] = distill
        losses["loss"] = losses["loss"] + self.distill_weight * distill
        return losses, x_hat, vq

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        self.model.quantizer.eval()
        return super().training_step(batch, batch_idx)


def finetune_vqvae(
    run_dir: Path,
    config: RunConfig,
    sliceset: SliceSet,
    result: PruneResult,
    minutes: float,
    lr: float,
    meta: dict[str, Any],
    teacher: VQVAE | None = None,
) -> Path:
    """Fine-tune a pruned VQ-VAE for `minutes` in the run at `run_dir` and write its bundle.

    The run's vqvae_train settings apply, with max_minutes = minutes, learning rate `lr` and
    one device;
    checkpoints, frames, history and logs go where fit_vqvae puts them, and the bundle (best by
    validation SSIM, else the last weights) to RUN/vqvae/VQVAE_Model with `meta` added.
    minutes = 0 writes the pruned model as it is. teacher: the unpruned source model, whose
    latents the pruned encoder is distilled towards (FrozenCodebookModule). Returns the bundle
    folder.
    """
    if not minutes >= 0:
        raise ValueError(f"minutes: expected a number >= 0, got {minutes!r}")
    layout = RunLayout(run_dir)
    cfg = replace(
        config.vqvae_train,
        max_minutes=minutes or None,
        epochs=FINETUNE_EPOCHS,
        lr=lr,
        devices=1,  # one process: the bundle is written right after fit, without a DDP barrier
        num_nodes=1,
        strategy="auto",
    )
    info: dict[str, Any] = {
        "finetune_minutes": minutes,
        "finetune_lr": lr,
        "distill_weight": DISTILL_WEIGHT if teacher is not None else 0.0,
    }
    if minutes == 0:
        info["parameters"] = sum(p.numel() for p in result.model.parameters())
        model = result.model.eval()
        return save_bundle(
            layout.bundle("vqvae"), model, result.config, kind="vqvae", meta={**meta, **info}
        )
    datamodule = SliceDataModule(
        sliceset, batch_size=cfg.batch_size, num_workers=config.data.num_workers, seed=cfg.seed
    )
    n_train = int((sliceset.split == "train").sum())
    per_epoch = steps_per_epoch(n_train, cfg.batch_size, cfg.devices * cfg.num_nodes, None)
    # the run's loss without the discriminator, which is not in the bundle to go on from
    adversarial = replace(config.adversarial, enabled=False)
    module = FrozenCodebookModule(
        result.model,
        cfg,
        config.data.augment,
        FINETUNE_EPOCHS * per_epoch,
        adversarial,
        teacher=teacher,
    )
    trainer, history = fit_stage(
        "vqvae",
        module,
        cfg,
        layout,
        callbacks=[ReconstructionFrames(layout.frames, frame_slices(sliceset))],
        datamodule=datamodule,
    )
    return finish_bundle("vqvae", trainer, history, module, cfg, layout, {**meta, **info})


def default_finetune_lr(config: RunConfig) -> float:
    """The fine-tuning learning rate when none is given: FINETUNE_LR_SCALE x the run's."""
    return config.vqvae_train.lr * FINETUNE_LR_SCALE


def pruning_summary(result: PruneResult) -> dict[str, Any]:
    """The pruning's numbers for metrics.json: amount, channels and groups."""
    return {
        "amount": result.amount,
        "prunable_channels": result.prunable_before,
        "kept_channels": result.prunable_after,
        "removed_fraction": result.removed_fraction,
        "groups": {g: list(v) for g, v in result.groups.items()},
        "channels": list(result.config.channels),
        "res_channels": result.config.res_channels,
    }
