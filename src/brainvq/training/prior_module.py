"""LightningModule for the PixelCNN prior: cross-entropy over code indices."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from brainvq.config import to_dict
from brainvq.models.neighbour_map import NO_SLICE
from brainvq.models.pixelcnn import GatedPixelCNN, PixelCNNConfig
from brainvq.run_config import TrainConfig
from brainvq.training.base_module import StageModule
from brainvq.training.guards import check_finite

LN2 = math.log(2.0)


class PriorModule(StageModule):
    """Trains a GatedPixelCNN on code maps (B, h, w) with their slice levels (B,) and, for a
    prior with the neighbour, the code maps of the slices below (B, h, w) (-1: none).

    In training, a share neighbour_dropout of the maps is shown without its slice below, so that
    the prior also draws a first slice at any level, and a share neighbour_noise of the codes
    below is replaced by random ones. Logs the loss as bits per code
    (cross-entropy in nats / ln 2), train and validation."""

    def __init__(
        self, model_config: PixelCNNConfig, train_config: TrainConfig, total_steps: int = 1000
    ) -> None:
        super().__init__()
        self.model_config = model_config
        self.train_config = train_config
        self.total_steps = total_steps
        self.model = GatedPixelCNN(model_config)
        self.use_memory_format()  # the embedding's permuted output is channels_last already
        self.save_hyperparameters({"prior": to_dict(model_config), "train": to_dict(train_config)})

    def _cond(self, levels: torch.Tensor) -> torch.Tensor | None:
        return levels.long() if self.model_config.n_levels > 0 else None

    def _below(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
        """The slices below (B, h, w) int64; in training some dropped to NO_SLICE and some of
        the codes of the others replaced by random codes (neighbour_dropout, _noise)."""
        cfg = self.model_config
        if not cfg.has_neighbour:
            return None
        below = batch[2].long()
        if not self.training:
            return below
        if cfg.neighbour_noise > 0:
            noisy = torch.rand(below.shape, device=below.device) < cfg.neighbour_noise
            random = torch.randint_like(below, cfg.codebook_size)
            below = torch.where(noisy & (below != NO_SLICE), random, below)
        if cfg.neighbour_dropout > 0:
            drop = torch.rand(len(below), device=below.device) < cfg.neighbour_dropout  # (B,)
            below = torch.where(drop[:, None, None], NO_SLICE, below)
        return below

    def _nll_nats(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        codes, levels = batch[0].long(), batch[1]
        logits = self.model(codes, self._cond(levels), self._below(batch))  # (B, K, h, w)
        # One row of K logits per code: in channels_last each row is contiguous, so the
        # log-softmax runs along memory instead of first copying the logits to the plain
        # layout; the same loss, in less time (docs/speed.md, "Speed paths").
        rows = logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1])  # (B*h*w, K)
        return F.cross_entropy(rows.float(), codes.reshape(-1))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        nats = self._nll_nats(batch)
        check_finite(self.global_step, {"nll": nats})
        bs = batch[0].shape[0]
        self.log(
            "train/nll_bits",
            nats / LN2,
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=bs,
            sync_dist=True,
        )
        return nats

    def validation_step(self, batch, batch_idx: int) -> None:
        nats = self._nll_nats(batch)
        bs = batch[0].shape[0]
        self.log(
            "val/nll_bits", nats / LN2, prog_bar=True, on_epoch=True, batch_size=bs, sync_dist=True
        )
        self.log("val/nll_nats", nats, on_epoch=True, batch_size=bs, sync_dist=True)
