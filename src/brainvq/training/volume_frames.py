"""Per-epoch reconstruction figures of a 3D VQ-VAE: a validation volume in three planes."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from brainvq.data.planes import planes_figure
from brainvq.io.images import save_png
from brainvq.models.eval_mode import eval_mode


class VolumeFrames(L.Callback):
    """Every validation epoch, reconstruct fixed validation volumes and save, per volume, its
    middle axial, coronal and sagittal slices, the original's row above the reconstruction's,
    as `frames/epoch_XXX.png` and to TensorBoard: the 3D model's ReconstructionFrames."""

    def __init__(self, frames_dir: Path, volumes: torch.Tensor) -> None:
        self.frames_dir = Path(frames_dir)
        self.volumes = volumes  # (n, 1, D, H, W) float in [0, 1]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        with eval_mode(pl_module), torch.no_grad():
            x = self.volumes.to(pl_module.device)
            x_hat = pl_module.model.decode_indices(pl_module.model.encode(x)).float().clamp(0, 1)
        pairs = torch.stack([x.float(), x_hat], dim=1)[:, :, 0].flatten(0, 1)  # (2n, D, H, W)
        images = (pairs.cpu().numpy() * 255).round().astype(np.uint8)
        grid = planes_figure(list(images))
        save_png(self.frames_dir / f"epoch_{trainer.current_epoch:03d}.png", grid)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):
                experiment.add_image("reconstructions", grid[None], trainer.current_epoch)
