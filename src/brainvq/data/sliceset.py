"""SliceSet: the one form of every data source, in memory or memory-mapped from a store."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "validate", "test")


@dataclass(frozen=True)
class SliceSet:
    """2D slices with their provenance.

    Attributes:
        images: (N, H, W) uint8 grayscale slices at the working size: an array in memory, or
            a read-only np.memmap of a slice store (brainvq.data.store), read only where used.
        split: (N,) str, one of SPLITS.
        subject: (N,) str subject (or volume) id.
        level: (N,) int16 axial level of the slice in its subject, -1 when unknown.
        filename: (N,) str source file name (relative to the source, or a volume name).
        source: a description of where the slices came from (path or "demo").
        notes: things the loader did that a user should know (conversions, skipped files).
        splits_present: the splits the source holds (a source may lack some, e.g. no test).
        n_levels: number of distinct slice levels (level in [0, n_levels)); 0 if unknown.
        content_key: a key that names these slices' content (a store's cache key), so that
            what is derived from them (code maps) can be keyed without reading them; None:
            derived keys hash the arrays.
    """

    images: np.ndarray
    split: np.ndarray
    subject: np.ndarray
    level: np.ndarray
    filename: np.ndarray
    source: str
    notes: tuple[str, ...] = ()
    splits_present: tuple[str, ...] = SPLITS
    n_levels: int = 0
    content_key: str | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 3 or self.images.dtype != np.uint8:
            raise ValueError(
                "SliceSet.images must be (N, H, W) uint8, "
                f"got {self.images.shape} {self.images.dtype}"
            )
        for name in ("split", "subject", "level", "filename"):
            if len(getattr(self, name)) != n:
                got = len(getattr(self, name))
                raise ValueError(f"SliceSet.{name} has {got} entries, expected {n}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        """Working size (images are square, size x size)."""
        return int(self.images.shape[-1])

    def split_rows(self, split: str) -> np.ndarray:
        """Positions (k,) of the slices of `split`, reading no image; ValueError naming the
        split and the source if it is absent."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
        rows = np.flatnonzero(self.split == split)
        if split not in self.splits_present or not len(rows):
            present = ", ".join(s for s in self.splits_present) or "none"
            raise ValueError(
                f"the source {self.source} has no {split!r} split (splits present: {present})"
            )
        return rows

    def require_split(self, split: str) -> SliceSet:
        """The slices of `split`; ValueError naming the split and the source if it is absent."""
        return self.subset(self.split_rows(split))

    def eval_split(self, wanted: str | None = None) -> str:
        """The split to evaluate on: `wanted` if given (it must exist), else test when the
        source has one, else validate."""
        if wanted:
            self.require_split(wanted)
            return wanted
        for split in ("test", "validate"):
            if (self.split == split).any():
                return split
        raise ValueError(
            f"the source {self.source} has neither a test nor a validate split to evaluate on"
        )

    def subset(self, mask: np.ndarray) -> SliceSet:
        """The slices where `mask` (bool (N,) or int indices) selects. A run of consecutive
        slices of a memory-mapped set (a split of a store, whose slices are stored split by
        split) stays mapped, so that selecting a split reads nothing."""
        select: np.ndarray | slice = mask
        if isinstance(self.images, np.memmap):
            rows = np.flatnonzero(mask) if np.asarray(mask).dtype == bool else np.asarray(mask)
            if len(rows) and (np.diff(rows) == 1).all():
                select = slice(int(rows[0]), int(rows[-1]) + 1)
        whole = isinstance(select, slice) and select == slice(0, len(self))
        return SliceSet(
            images=self.images[select],
            split=self.split[select],
            subject=self.subject[select],
            level=self.level[select],
            filename=self.filename[select],
            source=self.source,
            notes=self.notes,
            splits_present=self.splits_present,
            n_levels=self.n_levels,
            content_key=self.content_key if whole else None,
        )
