"""Callbacks and plugins shared by both training stages."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, ProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO

from brainvq.atomic import atomic_path, atomic_write_json
from brainvq.io.images import image_grid, save_png
from brainvq.models.eval_mode import eval_mode
from brainvq.progress import log_line


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file and renamed: a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states in a form `torch.load(weights_only=True)` accepts."""
    np_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), None))
    np.random.set_state(
        ("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0)
    )
    torch.set_rng_state(state["torch"])


class EpochHistory(Checkpoint):
    """Keeps one row of epoch metrics per epoch (train and validation), in the checkpoint and
    in `path` (JSON, rewritten atomically each epoch), so curves survive a resume.

    It subclasses `Checkpoint` only for hook order: Lightning calls checkpoint-type callbacks'
    `on_train_epoch_end` after the LightningModule's, where the epoch perplexity is logged.
    Place it before ModelCheckpoint so the saved checkpoint holds the row of its epoch.
    """

    def __init__(self, path: Path, prefixes: tuple[str, ...] = ("train/", "val/")) -> None:
        self.path = Path(path)
        self.prefixes = prefixes
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row: dict[str, float] = {"epoch": int(trainer.current_epoch)}
        for key, value in trainer.callback_metrics.items():
            if key.startswith(self.prefixes) and not key.endswith("_step"):
                row[key.removesuffix("_epoch")] = float(value)
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        if trainer.is_global_zero:
            atomic_write_json(self.path, self.rows)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": json.dumps(self.rows)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = json.loads(state_dict["rows"])


class Throughput(L.Callback):
    """Logs `train/items_per_s` every epoch: training images (or code maps) per second of
    training steps, all processes together; validation and checkpointing are not counted."""

    def __init__(self) -> None:
        self._start = 0.0
        self._seconds = 0.0
        self._items = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._seconds, self._items = 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Any, batch_idx: int) -> None:
        self._seconds += time.perf_counter() - self._start
        self._items += len(batch[0]) * trainer.world_size

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._seconds > 0:
            pl_module.log("train/items_per_s", self._items / self._seconds, rank_zero_only=True)


def median_throughput(rows: list[dict[str, float]]) -> float | None:
    """The median `train/items_per_s` of an EpochHistory's rows (None without any)."""
    values = sorted(r["train/items_per_s"] for r in rows if "train/items_per_s" in r)
    return values[len(values) // 2] if values else None


class ReconstructionFrames(L.Callback):
    """Every validation epoch, reconstruct a fixed set of validation slices and save the grid
    (originals on top, reconstructions below) as `frames/epoch_XXX.png` and to TensorBoard."""

    def __init__(self, frames_dir: Path, images: torch.Tensor) -> None:
        self.frames_dir = Path(frames_dir)
        self.images = images  # (n, 1, H, W) float in [0, 1]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        with eval_mode(pl_module), torch.no_grad():
            x = self.images.to(pl_module.device)
            x_hat = pl_module.model.decode_indices(pl_module.model.encode(x)).float().clamp(0, 1)
        both = torch.cat([x.float(), x_hat], dim=0)[:, 0].cpu().numpy()  # (2n, H, W)
        grid = image_grid((both * 255).round().astype(np.uint8), ncols=len(x))
        save_png(self.frames_dir / f"epoch_{trainer.current_epoch:03d}.png", grid)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):
                experiment.add_image("reconstructions", grid[None], trainer.current_epoch)


class EpochLines(ProgressBar):
    """Lightning's progress for a log: one line per training epoch on stderr, with the epoch's
    progress-bar metrics and how long it took, instead of a bar redrawn at every step
    (brainvq.progress: what a log gets)."""

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage
        self._enabled = True
        self._start = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        metrics = self.get_metrics(trainer, pl_module)
        shown = ", ".join(
            f"{key.removesuffix('_epoch')} {value:.4g}"
            if isinstance(value, float)
            else f"{key} {value}"
            for key, value in metrics.items()
            if key != "v_num" and not key.endswith("_step")
        )
        epochs = "" if trainer.max_epochs is None else f"/{trainer.max_epochs}"
        took = time.perf_counter() - self._start
        log_line(f"{self.stage} epoch {trainer.current_epoch + 1}{epochs}: {shown} ({took:.1f} s)")
