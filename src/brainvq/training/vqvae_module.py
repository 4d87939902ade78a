"""LightningModule for the VQ-VAE: loss = reconstruction + codebook + beta x commitment.

The reconstruction term is MSE + ssim_weight x (1 - SSIM). MSE alone spends the code on
getting intensities right and leaves the fine structure soft; the SSIM term (the metric's own
11x11 Gaussian window) rewards local contrast and structure. On the demo cohort, equal runs of
2,400 steps reached validation SSIM 0.937 with ssim_weight 0.1 and 0.910 with MSE alone.

The `adversarial` section (brainvq.models.discriminator.AdversarialConfig) adds, optionally, a
log-amplitude spectrum term to the reconstruction loss and a patch discriminator trained beside
the VQ-VAE as in VQGAN: from `start_step` on, the VQ-VAE's loss gains adaptive_weight x the
generator loss and the discriminator takes one step per batch. Two optimisers need Lightning's
manual optimisation, which is used only then: without a discriminator the module trains
exactly as it always has (automatic optimisation; the Trainer clips the gradients).

A 3D VQ-VAE (`vqvae.dims: 3`) trains here too, on batches of volumes (B, 1, D, H, W): its
SSIM terms and validation metrics are those of every axial slice of every volume, and its
weights and activations use channels_last_3d where the 2D model uses channels_last. The
adversarial section is for 2D models only (RunConfig refuses it with dims 3).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import torch
import torch.nn.functional as F

from brainvq.config import to_dict
from brainvq.data.augment import AugmentConfig, augment_batch
from brainvq.metrics import perplexity, psnr, ssim
from brainvq.models.discriminator import AdversarialConfig, PatchDiscriminator
from brainvq.models.vqvae import VQVAE, VQVAEConfig
from brainvq.run_config import TrainConfig
from brainvq.training.adversarial import (
    adaptive_weight,
    discriminator_loss,
    generator_loss,
    log_spectrum_distance,
)
from brainvq.training.base_module import StageModule
from brainvq.training.guards import check_finite
from brainvq.training.schedule import warmup_cosine


def axial_slices(x: torch.Tensor) -> torch.Tensor:
    """Images as they are, volumes as their slices: (B, C, H, W) -> itself; (B, C, D, H, W) ->
    (B*D, C, H, W), volume by volume in level order."""
    if x.ndim == 4:
        return x
    return x.transpose(1, 2).flatten(0, 1)  # (B*D, C, H, W)


class VQVAEModule(StageModule):
    """Trains a VQVAE. Logs per step and per epoch: total, reconstruction, VQ (codebook,
    commitment), perplexity and codes used; validation SSIM/PSNR (data_range 1). With the
    adversarial section: the frequency loss (freq), and from start_step on the generator loss
    (g_adv), the weight it is added with (adaptive_weight) and the discriminator loss (d_loss).
    train/loss never includes the adversarial term, so it compares with val/loss and with runs
    without a discriminator."""

    def __init__(
        self,
        model_config: VQVAEConfig,
        train_config: TrainConfig,
        augment: AugmentConfig | None = None,
        total_steps: int = 1000,
        adversarial: AdversarialConfig | None = None,
    ) -> None:
        super().__init__()
        self.model_config = model_config
        self.train_config = train_config
        self.augment = augment or AugmentConfig()
        self.adversarial = adversarial or AdversarialConfig()
        self.total_steps = total_steps
        self.model = VQVAE(model_config)
        self.discriminator = self._make_discriminator()
        self.use_memory_format()
        if self.discriminator is not None:
            self.discriminator.to(memory_format=self.memory_format)
        self.automatic_optimization = self.discriminator is None
        # Training steps taken (batches), for start_step: under manual optimisation Lightning's
        # global_step counts the steps of both optimisers.
        self.adversarial_steps = 0
        self.discriminator_sync_max_diff: float | None = None
        self.save_hyperparameters(
            {
                "vqvae": to_dict(model_config),
                "train": to_dict(train_config),
                "augment": to_dict(self.augment),
                "adversarial": to_dict(self.adversarial),
            }
        )
        K = model_config.codebook_size
        self.codebook_sync_max_diff: float | None = None
        self.register_buffer("_epoch_counts", torch.zeros(K), persistent=False)
        self.register_buffer("_val_counts", torch.zeros(K), persistent=False)

    def _make_discriminator(self) -> PatchDiscriminator | None:
        """The discriminator when enabled, initialised from its own seed so that building it
        leaves the global RNG alone: until start_step, a run with it trains exactly like one
        without it."""
        if not self.adversarial.enabled:
            return None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.train_config.seed)
            return PatchDiscriminator(self.adversarial, self.model_config.in_channels)

    def forward(self, x: torch.Tensor):
        return self.model(x)

    @property
    def memory_format(self) -> torch.memory_format:
        if self.model_config.dims == 3 and self.train_config.channels_last:
            return torch.channels_last_3d
        return super().memory_format

    def losses(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, Any]:
        """The training loss and its parts for images x: (B, 1, H, W) float in [0, 1] (a 3D
        model: volumes (B, 1, D, H, W)).

        Returns ({loss, recon, mse, vq, codebook, commitment, and freq when
        adversarial.frequency_weight > 0}: scalars, x_hat of x's shape, fp32 not clamped, the
        quantizer's VQOutput). loss = recon + frequency_weight x freq + vq. In training mode
        the codebook updates.
        """
        x_hat, vq = self.model(x.contiguous(memory_format=self.memory_format))
        x_hat, x = x_hat.float(), x.float()
        mse = F.mse_loss(x_hat, x)
        recon = mse
        if self.model_config.ssim_weight > 0:
            recon = recon + self.model_config.ssim_weight * (
                1.0 - ssim(axial_slices(x_hat), axial_slices(x)).mean()
            )
        image = recon
        extra = {}
        if self.adversarial.frequency_weight > 0:
            extra["freq"] = log_spectrum_distance(x_hat, x)
            image = image + self.adversarial.frequency_weight * extra["freq"]
        total = image + vq.loss
        losses = {
            "loss": total,
            "recon": recon,
            "mse": mse,
            "vq": vq.loss,
            "codebook": vq.codebook_loss,
            "commitment": vq.commitment_loss,
            **extra,
        }
        return losses, x_hat, vq

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, _level = batch
        if self.augment.enabled:
            x = augment_batch(x, self.augment)
        if self.discriminator is not None:
            self._adversarial_step(x)
            return None
        losses, _, vq = self.losses(x)
        check_finite(self.global_step, losses)
        self._log_train(losses, vq, x.shape[0])
        return losses["loss"]

    def _adversarial_step(self, x: torch.Tensor) -> None:
        """One step under manual optimisation: the VQ-VAE (with the adversarial term from
        start_step on), then the discriminator (from start_step on), then both schedules.

        The discriminator judges this step's reconstructions (detached) against x: a second
        VQ-VAE forward would update the EMA codebook twice per batch."""
        adv = self.adversarial
        opt_g, opt_d = self.optimizers()
        active = self.adversarial_steps >= adv.start_step
        with self.toggled_optimizer(opt_g):  # no gradients into the discriminator here
            losses, x_hat, vq = self.losses(x)
            total = losses["loss"]
            if active:
                g_adv = generator_loss(adv.loss, self.discriminator(x_hat))
                # The VQ terms do not reach the decoder, so at its last layer the gradient of
                # `total` is the reconstruction (+ frequency) loss's alone.
                weight = adv.weight * adaptive_weight(
                    total,
                    g_adv,
                    self.model.decoder.layers[-1].weight,
                    adv.max_adaptive_weight,
                    self._loss_scale(),
                )
                losses.update(g_adv=g_adv, adaptive_weight=weight)
                total = total + weight * g_adv
            check_finite(self.adversarial_steps, losses)
            opt_g.zero_grad()
            self.manual_backward(total)
            opt_g.step()
        if active:
            with self.toggled_optimizer(opt_d):
                real = x.contiguous(memory_format=self.memory_format)
                d_loss = discriminator_loss(
                    adv.loss, self.discriminator(real), self.discriminator(x_hat.detach())
                )
                losses["d_loss"] = d_loss
                check_finite(self.adversarial_steps, losses)
                opt_d.zero_grad()
                self.manual_backward(d_loss)
                opt_d.step()
        sched_g, sched_d = self.lr_schedulers()
        sched_g.step()
        with warnings.catch_warnings():
            # before start_step the discriminator's schedule runs on without its optimiser, so
            # that its learning rate follows the same clock as the VQ-VAE's
            warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()`"))
            sched_d.step()
        self.adversarial_steps += 1
        self._log_train(losses, vq, x.shape[0])

    def _loss_scale(self) -> float:
        """The current scale of 16-mixed's gradient scaler; 1 without one (32, bf16-mixed)."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        return float(scaler.get_scale()) if scaler is not None else 1.0

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Under manual optimisation the Trainer does not clip (make_trainer passes it no
        # gradient_clip_val); this hook runs after the precision plugin unscales fp16 gradients.
        if not self.automatic_optimization and self.train_config.gradient_clip > 0:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.train_config.gradient_clip,
                gradient_clip_algorithm="norm",
            )

    def configure_optimizers(self):
        plain = super().configure_optimizers()
        if self.discriminator is None:
            return plain
        cfg, adv = self.train_config, self.adversarial
        opt_d = torch.optim.AdamW(
            self.discriminator.parameters(), lr=adv.lr, betas=tuple(adv.betas), weight_decay=0.0
        )
        sched_d = warmup_cosine(
            opt_d, cfg, self.total_steps, self.budget_used if cfg.max_minutes else None
        )
        return [
            plain,
            {"optimizer": opt_d, "lr_scheduler": {"scheduler": sched_d, "interval": "step"}},
        ]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.discriminator is not None:
            checkpoint["brainvq_adversarial_steps"] = self.adversarial_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        section = checkpoint.get("hyper_parameters", {}).get("adversarial") or {}
        trained_with = bool(section.get("enabled", False))
        if trained_with != (self.discriminator is not None):
            raise ValueError(
                "cannot resume: the checkpoint was trained "
                f"{'with' if trained_with else 'without'} the discriminator, but this run has "
                f"adversarial.enabled: {str(not trained_with).lower()}; resume with the setting "
                "it was trained with, or start a new run directory"
            )
        super().on_load_checkpoint(checkpoint)
        self.adversarial_steps = int(checkpoint.get("brainvq_adversarial_steps", 0))

    def _log_train(self, losses: dict[str, torch.Tensor], vq: Any, bs: int) -> None:
        """Log the step's losses (and count its codes for the epoch's usage)."""
        self._epoch_counts += vq.counts.detach().to(self._epoch_counts.dtype)
        self.log(
            "train/loss",
            losses["loss"],
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=bs,
            sync_dist=True,
        )
        for name in (k for k in losses if k != "loss"):
            self.log(
                f"train/{name}",
                losses[name],
                prog_bar=name == "recon",
                on_step=True,
                on_epoch=True,
                batch_size=bs,
                sync_dist=True,
            )
        self.log(
            "train/perplexity_step",
            vq.perplexity,
            prog_bar=True,
            on_step=True,
            on_epoch=False,
            batch_size=bs,
        )

    def _log_usage(self, prefix: str, counts: torch.Tensor) -> None:
        """Log perplexity and the fraction of codes used for `counts` (K,) summed over ranks."""
        if counts.sum() > 0:
            self.log(f"{prefix}/perplexity", perplexity(counts))
        self.log(f"{prefix}/codes_used", float((counts > 0).float().mean()))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, _level = batch
        losses, x_hat, vq = self.losses(x)
        self._val_counts += vq.counts.detach().to(self._val_counts.dtype)
        bs = x.shape[0]
        x_hat, x = axial_slices(x_hat.float().clamp(0, 1)), axial_slices(x.float())
        for name in (k for k in ("loss", "recon", "vq", "freq") if k in losses):
            self.log(f"val/{name}", losses[name], on_epoch=True, batch_size=bs, sync_dist=True)
        self.log(
            "val/ssim",
            ssim(x_hat, x).mean(),
            prog_bar=True,
            on_epoch=True,
            batch_size=bs,
            sync_dist=True,
        )
        self.log(
            "val/psnr",
            psnr(x_hat, x).clamp(max=100).mean(),
            on_epoch=True,
            batch_size=bs,
            sync_dist=True,
        )

    def on_validation_epoch_end(self) -> None:
        # Code usage of the training epoch is logged here too, not in on_train_epoch_end:
        # there, rank 0's progress bar syncs the epoch metrics before this module's hook runs,
        # while the other ranks go straight to the hook, and mismatched collectives deadlock.
        # Validation runs once at the end of every training epoch, so the counts are complete.
        counts = torch.stack([self._epoch_counts, self._val_counts])  # (2, K)
        if self.trainer.world_size > 1:
            counts = self.all_gather(counts).sum(dim=0)  # (2, K) summed over ranks
        if not self.trainer.sanity_checking:
            self._log_usage("train", counts[0])
        self._log_usage("val", counts[1])
        self._epoch_counts.zero_()
        self._val_counts.zero_()

    def on_train_end(self) -> None:
        """Check that every DDP process ends with the same codebook and discriminator (raises
        if not)."""
        self.codebook_sync_max_diff = self._max_diff_across_ranks(
            self.model.quantizer.codebook.detach(), "codebooks"
        )
        if self.discriminator is not None:
            state = self.discriminator.state_dict().values()
            flat = torch.cat([t.detach().float().flatten() for t in state])  # (P,)
            self.discriminator_sync_max_diff = self._max_diff_across_ranks(flat, "discriminators")

    def _max_diff_across_ranks(self, tensor: torch.Tensor, what: str) -> float:
        """Largest difference of `tensor` between DDP processes (0.0 alone); raises if > 0."""
        if self.trainer.world_size == 1:
            return 0.0
        gathered = self.all_gather(tensor)  # (world, *tensor.shape)
        diff = float((gathered - gathered[0:1]).abs().max())
        if diff > 0:
            raise RuntimeError(
                f"{what} differ across DDP processes after training "
                f"(max abs difference {diff:.3g}); please report this bug"
            )
        return diff
