"""A subject's slices on the frame, stacked in level order, are its volume: what a 3D model reads.

The store keeps slices, each with its subject, level and split (brainvq.data.store). A volume is
the slices of one subject of one split, sorted by level; the levels must be consecutive (no
gap) and every subject of the split must have the same number of them, so that volumes batch
as (B, 1, D, H, W). OASIS subjects have 32 levels, the demo cohort's too; a NIfTI cohort has
as many as its `data.z_range_mm` holds, the same for every scan, so one rule serves all.

`VolumeDataset` (batched by brainvq.data.dataset.VolumeDataModule) reads a volume's slices
when a batch asks for them (one read per run of consecutive rows: a subject's slices lie
together in a store), so training on volumes needs the memory of a few batches, as training
on slices does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from brainvq.data.sliceset import SliceSet
from brainvq.data.store import RowReader

__all__ = ["SubjectStack", "SubjectVolumes", "VolumeDataset", "subject_stacks", "subject_volumes"]


@dataclass(frozen=True)
class SubjectVolumes:
    """The volumes of one split: subject (S,) str in first-appearance order; rows (S, D) int64
    positions of each subject's slices in the SliceSet, in level order; first_level (S,) int64,
    the level of each volume's first (lowest) slice."""

    subject: np.ndarray
    rows: np.ndarray
    first_level: np.ndarray

    @property
    def depth(self) -> int:
        """Levels per volume (D)."""
        return int(self.rows.shape[1])

    def __len__(self) -> int:
        return len(self.subject)


def _subjects(sliceset: SliceSet, rows: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """(subject, its positions among `rows` in level order) for each subject of the slices at
    `rows`, in the order the SliceSet holds them. ValueError, naming the subject and the
    source, when a slice has no level (-1) or the subject's levels have a gap or a repeat."""
    subjects = np.asarray(sliceset.subject[rows]).astype(str)
    levels = np.asarray(sliceset.level[rows], dtype=np.int64)
    names, first_seen, inverse = np.unique(subjects, return_index=True, return_inverse=True)
    for k in np.argsort(first_seen, kind="stable"):
        name = str(names[k])
        mine = np.flatnonzero(inverse == k)
        mine = mine[np.argsort(levels[mine], kind="stable")]
        lv = levels[mine]
        if lv[0] < 0:
            raise ValueError(
                f"subject {name!r} of {sliceset.source} has slices without a level: a 3D "
                "model needs each slice's level on the frame to stack its volume"
            )
        if not np.array_equal(lv, np.arange(lv[0], lv[0] + len(lv))):
            raise ValueError(
                f"subject {name!r} of {sliceset.source} has levels {lv.tolist()}: a volume "
                "needs consecutive levels, each once"
            )
        yield name, mine


def subject_volumes(sliceset: SliceSet, split: str, level_stride: int = 1) -> SubjectVolumes:
    """The subjects of `split` as volumes.

    ValueError, naming the subject and the source, when a slice has no level (-1), a subject's
    levels have a gap or a repeat, subjects differ in their number of levels, or that number
    is not a multiple of `level_stride` (a 3D model's level_downsample).
    """
    rows = sliceset.split_rows(split)
    levels = np.asarray(sliceset.level[rows], dtype=np.int64)
    names, volumes, firsts = [], [], []
    for name, mine in _subjects(sliceset, rows):
        if volumes and len(mine) != len(volumes[0]):
            raise ValueError(
                f"subject {name!r} of {sliceset.source} has {len(mine)} levels but "
                f"{names[0]!r} has {len(volumes[0])}: volumes of one run need the same "
                "number of levels"
            )
        names.append(name)
        volumes.append(rows[mine])
        firsts.append(levels[mine[0]])
    depth = len(volumes[0])
    if depth % level_stride:
        raise ValueError(
            f"the subjects of {sliceset.source} have {depth} levels, not a multiple of the 3D "
            f"VQ-VAE's level stride {level_stride}: choose vqvae.level_downsample dividing "
            f"{depth}, or a data.z_range_mm whose number of levels it divides"
        )
    return SubjectVolumes(
        subject=np.asarray(names),
        rows=np.stack(volumes),  # (S, D)
        first_level=np.asarray(firsts, dtype=np.int64),
    )


@dataclass(frozen=True)
class SubjectStack:
    """One subject's slices: rows (D,) int64, their positions in the SliceSet in level order;
    first_level, the level of its lowest slice."""

    subject: str
    rows: np.ndarray
    first_level: int


def subject_stacks(sliceset: SliceSet, level_stride: int = 1) -> list[SubjectStack]:
    """Every subject of `sliceset`, whatever its split, as its slices in level order (a folder
    of slices reconstructed or encoded by a 3D model, one subject at a time, so subjects may
    differ in depth). ValueError, naming the subject and the source, as `subject_volumes`, or
    when a subject's number of levels is not a multiple of `level_stride`."""
    rows = np.arange(len(sliceset))
    stacks = []
    for name, mine in _subjects(sliceset, rows):
        level = int(sliceset.level[mine[0]])
        if len(mine) % level_stride:
            raise ValueError(
                f"subject {name!r} of {sliceset.source} has {len(mine)} levels ({level} to "
                f"{level + len(mine) - 1}), not a multiple of the 3D VQ-VAE's level stride "
                f"{level_stride}: a 3D model codes whole latent levels of {level_stride} slices"
            )
        stacks.append(SubjectStack(name, rows[mine], level))
    return stacks


class VolumeDataset(Dataset):
    """The subjects of one split as volumes, read when asked for.

    Item i is (volume (1, D, H, W) float32 in [0, 1], level int64 of its first slice).
    """

    def __init__(self, sliceset: SliceSet, split: str, level_stride: int = 1) -> None:
        self.split = split
        self.volumes = subject_volumes(sliceset, split, level_stride)
        self.levels = torch.from_numpy(self.volumes.first_level)
        self.reader = RowReader(sliceset.images)

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The volumes at `indices`, their slices read together."""
        index = np.asarray(indices, dtype=np.int64)
        rows = self.volumes.rows[index]  # (B, D)
        images = torch.from_numpy(self.reader.read(rows.ravel()))  # (B*D, H, W) uint8
        volumes = images.view(len(index), 1, rows.shape[1], *images.shape[1:])  # (B, 1, D, H, W)
        volumes = volumes.float().div_(255.0)
        return list(zip(volumes, self.levels[torch.from_numpy(index)], strict=True))
