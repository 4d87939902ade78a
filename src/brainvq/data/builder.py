"""SliceBuilder: collects slices one by one, with their provenance and notes, into a SliceSet."""

from __future__ import annotations

from collections import Counter

import numpy as np

from brainvq.data.sliceset import SliceSet
from brainvq.data.splits import present_splits


class SliceBuilder:
    """Accumulates (image, split, subject, slice index, file name) rows and loader notes.

    Notes are counted: the same note added for 300 files reads "300 files: <note>" once,
    with the first few example names.
    """

    MAX_EXAMPLES = 3

    def __init__(self, size: int) -> None:
        self.size = size
        self._images: list[np.ndarray] = []
        self._split: list[str] = []
        self._subject: list[str] = []
        self._slice: list[int] = []
        self._filename: list[str] = []
        self._notes: list[str] = []
        self._counted: Counter[str] = Counter()
        self._examples: dict[str, list[str]] = {}

    def add(self, image: np.ndarray, split: str, subject: str, level: int, filename: str) -> None:
        """Add one slice: image (size, size) uint8."""
        if image.shape != (self.size, self.size) or image.dtype != np.uint8:
            expected = f"({self.size}, {self.size}) uint8"
            raise ValueError(
                f"{filename}: slice is {image.shape} {image.dtype}, expected {expected}"
            )
        self._images.append(image)
        self._split.append(split)
        self._subject.append(subject)
        self._slice.append(level)
        self._filename.append(filename)

    def note(self, text: str) -> None:
        """A note about the whole source (added once)."""
        if text not in self._notes:
            self._notes.append(text)

    def count(self, text: str, example: str) -> None:
        """A note about one file; repeated notes are counted and a few file names kept."""
        self._counted[text] += 1
        examples = self._examples.setdefault(text, [])
        if len(examples) < self.MAX_EXAMPLES:
            examples.append(example)

    @property
    def notes(self) -> tuple[str, ...]:
        counted = []
        for text, n in self._counted.items():
            names = ", ".join(self._examples[text])
            more = ", ..." if n > len(self._examples[text]) else ""
            counted.append(f"{n} file{'s' if n != 1 else ''}: {text} (e.g. {names}{more})")
        return tuple(self._notes) + tuple(counted)

    def __len__(self) -> int:
        return len(self._images)

    def build(
        self,
        source: str,
        splits_present: tuple[str, ...] | None = None,
        n_levels: int | None = None,
    ) -> SliceSet:
        """The SliceSet of everything added; `splits_present` defaults to the splits seen and
        `n_levels` to one more than the highest level seen (a frame's levels may be given)."""
        level = np.asarray(self._slice, dtype=np.int16)
        known = len(level) > 0 and bool((level >= 0).all())
        if n_levels is None:
            n_levels = int(level.max()) + 1 if known else 0
        return SliceSet(
            images=np.stack(self._images)
            if self._images
            else np.zeros((0, self.size, self.size), np.uint8),
            split=np.asarray(self._split, dtype=str),
            subject=np.asarray(self._subject, dtype=str),
            level=level,
            filename=np.asarray(self._filename, dtype=str),
            source=source,
            notes=self.notes,
            splits_present=present_splits(self._split)
            if splits_present is None
            else splits_present,
            n_levels=n_levels,
        )
