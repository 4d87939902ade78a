"""What both training stages share: the optimiser, the schedule and resumable RNG state."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer

from brainvq.run_config import TrainConfig
from brainvq.training.callbacks import rng_state, set_rng_state
from brainvq.training.schedule import warmup_cosine


class StageModule(L.LightningModule):
    """A LightningModule whose `model` trains with AdamW and a warm-up + cosine schedule, and
    whose checkpoints carry the Python/NumPy/torch RNG states so a resume is exact.

    Subclasses set `self.model`, `self.train_config` and `self.total_steps`."""

    model: torch.nn.Module
    train_config: TrainConfig
    total_steps: int

    def use_memory_format(self) -> None:
        """Put the model's weights in channels_last when the config asks for it. Called from
        the subclass's __init__, before Lightning wraps the model (DDP) or builds optimisers."""
        self.model.to(memory_format=self.memory_format)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.train_config.channels_last else torch.contiguous_format

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["brainvq_rng"] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "brainvq_rng" in checkpoint:
            set_rng_state(checkpoint["brainvq_rng"])

    _budget_used = 0.0

    def budget_used(self) -> float:
        """Share of the --max-minutes budget spent (0..1) as of this step; 0 without a budget."""
        return self._budget_used

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if not self.train_config.max_minutes:
            return
        used = 0.0
        for callback in self.trainer.callbacks:
            if isinstance(callback, Timer):  # Lightning's, from max_time; it counts resumed time
                elapsed = callback.time_elapsed("train")
                remaining = callback.time_remaining("train") or 0.0
                used = elapsed / max(elapsed + remaining, 1e-9)
        # every DDP process must follow rank 0's clock, or their learning rates would differ
        self._budget_used = float(self.trainer.strategy.broadcast(used, src=0))

    def configure_optimizers(self):
        cfg = self.train_config
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        budget = self.budget_used if cfg.max_minutes else None
        sched = warmup_cosine(opt, cfg, self.total_steps, budget)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
