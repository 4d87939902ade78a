"""LightningModule for the VQ-VAE: loss = reconstruction + codebook + beta x commitment.

The reconstruction term is MSE + ssim_weight x (1 - SSIM). MSE alone spends the code on
getting intensities right and leaves the fine structure soft; the SSIM term (the metric's own
11x11 Gaussian window) rewards local contrast and structure. On the demo cohort, equal runs of
2,400 steps reached validation SSIM 0.937 with ssim_weight 0.1 and 0.910 with MSE alone.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from brainvq.config import to_dict
from brainvq.data.augment import AugmentConfig, augment_batch
from brainvq.metrics import perplexity, psnr, ssim
from brainvq.models.vqvae import VQVAE, VQVAEConfig
from brainvq.run import TrainConfig
from brainvq.training.base_module import StageModule
from brainvq.training.guards import check_finite


class VQVAEModule(StageModule):
    """Trains a VQVAE. Logs per step and per epoch: total, reconstruction, VQ (codebook,
    commitment), perplexity and codes used; validation SSIM/PSNR (data_range 1)."""

    def __init__(
        self,
        model_config: VQVAEConfig,
        train_config: TrainConfig,
        augment: AugmentConfig | None = None,
        total_steps: int = 1000,
    ) -> None:
        super().__init__()
        self.model_config = model_config
        self.train_config = train_config
        self.augment = augment or AugmentConfig()
        self.total_steps = total_steps
        self.model = VQVAE(model_config)
        self.use_memory_format()
        self.save_hyperparameters(
            {
                "vqvae": to_dict(model_config),
                "train": to_dict(train_config),
                "augment": to_dict(self.augment),
            }
        )
        K = model_config.codebook_size
        self.codebook_sync_max_diff: float | None = None
        self.register_buffer("_epoch_counts", torch.zeros(K), persistent=False)
        self.register_buffer("_val_counts", torch.zeros(K), persistent=False)

    def forward(self, x: torch.Tensor):
        return self.model(x)

    def losses(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, Any]:
        """The training loss and its parts for images x: (B, 1, H, W) float in [0, 1].

        Returns ({loss, recon, mse, vq, codebook, commitment}: scalars, x_hat (B, 1, H, W) fp32
        not clamped, the quantizer's VQOutput). In training mode the codebook updates.
        """
        x_hat, vq = self.model(x.contiguous(memory_format=self.memory_format))
        x_hat, x = x_hat.float(), x.float()
        mse = F.mse_loss(x_hat, x)
        recon = mse
        if self.model_config.ssim_weight > 0:
            recon = recon + self.model_config.ssim_weight * (1.0 - ssim(x_hat, x).mean())
        total = recon + vq.loss
        losses = {
            "loss": total,
            "recon": recon,
            "mse": mse,
            "vq": vq.loss,
            "codebook": vq.codebook_loss,
            "commitment": vq.commitment_loss,
        }
        return losses, x_hat, vq

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, _level = batch
        if self.augment.enabled:
            x = augment_batch(x, self.augment)
        losses, _, vq = self.losses(x)
        check_finite(self.global_step, losses)
        self._epoch_counts += vq.counts.detach().to(self._epoch_counts.dtype)
        bs = x.shape[0]
        self.log(
            "train/loss",
            losses["loss"],
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=bs,
            sync_dist=True,
        )
        for name in ("recon", "mse", "vq", "codebook", "commitment"):
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
        return losses["loss"]

    def _log_usage(self, prefix: str, counts: torch.Tensor) -> None:
        """Log perplexity and the fraction of codes used for `counts` (K,) summed over ranks."""
        if counts.sum() > 0:
            self.log(f"{prefix}/perplexity", perplexity(counts))
        self.log(f"{prefix}/codes_used", float((counts > 0).float().mean()))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, _level = batch
        losses, x_hat, vq = self.losses(x)
        self._val_counts += vq.counts.detach().to(self._val_counts.dtype)
        x_hat = x_hat.float().clamp(0, 1)
        bs = x.shape[0]
        for name in ("loss", "recon", "vq"):
            self.log(f"val/{name}", losses[name], on_epoch=True, batch_size=bs, sync_dist=True)
        self.log(
            "val/ssim",
            ssim(x_hat, x.float()).mean(),
            prog_bar=True,
            on_epoch=True,
            batch_size=bs,
            sync_dist=True,
        )
        self.log(
            "val/psnr",
            psnr(x_hat, x.float()).clamp(max=100).mean(),
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
        """Check that every DDP process ends with the same codebook (raises if not)."""
        codebook = self.model.quantizer.codebook.detach()
        if self.trainer.world_size > 1:
            gathered = self.all_gather(codebook)  # (world, K, D)
            self.codebook_sync_max_diff = float((gathered - gathered[0:1]).abs().max())
            if self.codebook_sync_max_diff > 0:
                raise RuntimeError(
                    "codebooks differ across DDP processes after training "
                    f"(max abs difference {self.codebook_sync_max_diff:.3g}); "
                    "please report this bug"
                )
        else:
            self.codebook_sync_max_diff = 0.0
