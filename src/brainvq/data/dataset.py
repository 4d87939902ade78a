"""Torch datasets over a SliceSet and a LightningDataModule with train/validate/test loaders."""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from brainvq.data.sliceset import SliceSet

__all__ = ["EpochShuffleSampler", "SliceDataModule", "SliceDataset"]


class SliceDataset(Dataset):
    """The slices of one split of a SliceSet.

    Item i is (image (1, H, W) float32 in [0, 1], level int64 = slice index, -1 if unknown).
    Raises ValueError naming the split and the source if the source has no such split.
    """

    def __init__(self, sliceset: SliceSet, split: str) -> None:
        part = sliceset.require_split(split)
        self.split = split
        self.images = torch.from_numpy(np.ascontiguousarray(part.images))  # (N, H, W) uint8
        self.levels = torch.from_numpy(part.level.astype(np.int64))  # (N,)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i].unsqueeze(0).float().div_(255.0)  # (1, H, W)
        return image, self.levels[i]


class EpochShuffleSampler(Sampler[int]):
    """A permutation drawn from (seed, epoch) alone: Lightning calls `set_epoch` before every
    epoch, so a resumed run sees exactly the batches an uninterrupted run would have."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


class SliceDataModule(L.LightningDataModule):
    """Train/validate/test loaders over a SliceSet.

    Training batches are shuffled (seeded) and keep every slice (no drop_last); validation
    and test batches are in order. Augmentation belongs to the training step (the VQ-VAE's
    module calls `augment_batch`), so evaluation batches are never augmented.
    """

    def __init__(
        self,
        sliceset: SliceSet,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.sliceset = sliceset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self._datasets: dict[str, SliceDataset] = {}

    def dataset(self, split: str) -> SliceDataset:
        """The dataset of `split` (built once)."""
        if split not in self._datasets:
            self._datasets[split] = SliceDataset(self.sliceset, split)
        return self._datasets[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(len(dataset), self.seed) if shuffle else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validate", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
