"""Torch datasets over a SliceSet and a LightningDataModule with train/validate/test loaders.

A dataset reads its slices by position when a batch asks for them (`__getitems__`: one
read per run of consecutive slices; brainvq.data.store.RowReader), so a SliceSet memory-mapped
from a store of any size trains in the memory of a few batches, from the main process or
from DataLoader workers. Under DDP Lightning wraps the sampler in its distributed sampler, so
each process reads only its shard.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from brainvq.data.sliceset import SliceSet
from brainvq.data.store import RowReader
from brainvq.data.subject_volumes import VolumeDataset

__all__ = [
    "CodeMapDataset",
    "EpochShuffleSampler",
    "SliceDataModule",
    "SliceDataset",
    "VolumeDataModule",
]


class SliceDataset(Dataset):
    """The slices of one split of a SliceSet, read when asked for.

    Item i is (image (1, H, W) float32 in [0, 1], level int64 = slice index, -1 if unknown).
    Raises ValueError naming the split and the source if the source has no such split.
    """

    def __init__(self, sliceset: SliceSet, split: str) -> None:
        self.split = split
        self.rows = sliceset.split_rows(split)  # (N,) positions in the set
        self.levels = torch.from_numpy(np.asarray(sliceset.level[self.rows], dtype=np.int64))
        self.reader = RowReader(sliceset.images)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The items at `indices`, read together (the DataLoader's batched fetch)."""
        index = np.asarray(indices, dtype=np.int64)
        images = torch.from_numpy(self.reader.read(self.rows[index]))  # (B, H, W) uint8
        images = images.unsqueeze(1).float().div_(255.0)  # (B, 1, H, W)
        levels = self.levels[torch.from_numpy(index)]
        return list(zip(images, levels, strict=True))


class CodeMapDataset(Dataset):
    """Code maps read when asked for: item i is (codes (h, w) int64, level int64), or with
    `below` (codes, level, the code map of the slice below (h, w) int64, -1 everywhere where
    there is none).

    codes: (N, h, w) int code indices (in memory or memory-mapped); level: (N,) int; below:
    (N,) int, the row of each map's slice below in `codes`, -1 for none (a prior of whole
    subjects), or None."""

    def __init__(self, codes: np.ndarray, level: np.ndarray, below: np.ndarray | None = None):
        if len(codes) != len(level) or (below is not None and len(below) != len(level)):
            got = "" if below is None else f" and {len(below)} rows below"
            raise ValueError(f"{len(codes)} code maps but {len(level)} levels{got}")
        self.reader = RowReader(codes)
        self.levels = torch.from_numpy(np.asarray(level, dtype=np.int64))
        self.below = None if below is None else np.asarray(below, dtype=np.int64)
        self.shape = tuple(codes.shape[1:])

    def __len__(self) -> int:
        return len(self.levels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, ...]]:
        index = np.asarray(indices, dtype=np.int64)
        codes = torch.from_numpy(self.reader.read(index).astype(np.int64))  # (B, h, w)
        levels = self.levels[torch.from_numpy(index)]
        if self.below is None:
            return list(zip(codes, levels, strict=True))
        rows = self.below[index]  # (B,)
        below = np.full((len(index), *self.shape), -1, dtype=np.int64)  # (B, h, w)
        if (rows >= 0).any():
            below[rows >= 0] = self.reader.read(rows[rows >= 0]).astype(np.int64)
        return list(zip(codes, levels, torch.from_numpy(below), strict=True))


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


class VolumeDataModule(SliceDataModule):
    """SliceDataModule's loaders over volumes: a batch is (B, 1, D, H, W) whole subjects."""

    def __init__(
        self,
        sliceset: SliceSet,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
        level_stride: int = 1,
    ) -> None:
        super().__init__(sliceset, batch_size, num_workers, seed)
        self.level_stride = level_stride

    def dataset(self, split: str) -> VolumeDataset:
        """The volumes of `split` (built once)."""
        if split not in self._datasets:
            self._datasets[split] = VolumeDataset(self.sliceset, split, self.level_stride)
        return self._datasets[split]
