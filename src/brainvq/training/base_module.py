"""What both training stages share: the optimiser, the schedule and resumable RNG state."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from brainvq.training.callbacks import rng_state, set_rng_state
from brainvq.training.config import TrainConfig
from brainvq.training.schedule import warmup_cosine


class StageModule(L.LightningModule):
    """A LightningModule whose `model` trains with AdamW and a warm-up + cosine schedule, and
    whose checkpoints carry the Python/NumPy/torch RNG states so a resume is exact.

    Subclasses set `self.model`, `self.train_config` and `self.total_steps`."""

    model: torch.nn.Module
    train_config: TrainConfig
    total_steps: int

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["brainvq_rng"] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "brainvq_rng" in checkpoint:
            set_rng_state(checkpoint["brainvq_rng"])

    def configure_optimizers(self):
        cfg = self.train_config
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = warmup_cosine(opt, cfg, self.total_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
