"""Mixed sources: one run's slices from several sources, each on its own range of one grid.

A frame is a range of OASIS's grid over MNI152 (brainvq.data.space.frame), so sources sliced on
different ranges of it can train one run: OASIS's band is levels 67 to 98 of the whole-brain
frame (configs/whole_brain.yaml). The run's frame is its first source's (`data.source`, with
`data.z_range_mm`); every other source (`data.sources`) is loaded as it would be alone (its own
cache entry, its own levels and its own split of its subjects) and its levels are moved onto the
run's frame by `Frame.level_offset` (OASIS's level k becomes level k + offset: levels from the
frame, not from file names). A source whose frame is not a range of the run's, or whose levels
leave it, is refused with both frames named; so is a subject id that two sources share.

The mixture is a slice store of its own in the cache, keyed by its parts' content keys and
offsets, built one source at a time (one source's slices in memory at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainvq.data.builder import SlicePart
from brainvq.data.cache import SliceCache, cache_key
from brainvq.data.decode import DecodePlan
from brainvq.data.loader import DEMO, load_slices, resolve_source
from brainvq.data.sliceset import SliceSet
from brainvq.data.space.frame import Frame
from brainvq.data.space.run_space import RANGED_KINDS, frame_for_source

MIXED = "mixed"


@dataclass(frozen=True)
class SourceOptions:
    """How every source of a mixture is loaded (brainvq.data.loader.load_slices's options);
    z_range_mm reaches only the kinds sliced at chosen heights (volumes, the demo cohort)."""

    size: int
    cache_dir: Path | None
    n_levels: int
    z_range_mm: tuple[float, float] | None
    seed: int
    demo_subjects: tuple[int, int, int]

    def frame(self, source: str) -> Frame:
        """The frame `source` is sliced on when loaded alone."""
        kind = DEMO if source == DEMO else resolve_source(source, self.n_levels).kind
        z_range = self.z_range_mm if kind in RANGED_KINDS else None
        return frame_for_source(kind, self.n_levels, z_range)[0]

    def load(self, source: str, progress: bool) -> SliceSet:
        kind = DEMO if source == DEMO else resolve_source(source, self.n_levels).kind
        return load_slices(
            source,
            self.size,
            cache_dir=self.cache_dir,
            n_levels=self.n_levels,
            z_range_mm=self.z_range_mm if kind in RANGED_KINDS else None,
            seed=self.seed,
            demo_subjects=self.demo_subjects,
            progress=progress,
        )


@dataclass(frozen=True)
class PartTask:
    """One source of the mixture and the offset of its levels on the run's frame."""

    source: str
    offset: int
    options: SourceOptions


def decode_part(task: PartTask) -> SlicePart:
    """A source's slices (from its cache entry), levels moved onto the run's frame."""
    part = task.options.load(task.source, progress=False)
    level = np.where(part.level >= 0, part.level.astype(np.int64) + task.offset, -1)
    return SlicePart(
        np.asarray(part.images),
        part.split.tolist(),
        part.subject.tolist(),
        level.tolist(),
        part.filename.tolist(),
    )


def level_offsets(sources: tuple[str, ...], options: SourceOptions) -> list[int]:
    """Where each source's level 0 lies on the first source's frame (the run's); ValueError
    naming both frames when a source's frame is not a range of it (Frame.level_offset)."""
    frame = options.frame(sources[0])
    return [frame.level_offset(options.frame(source)) for source in sources]


def load_mixed(sources: tuple[str, ...], options: SourceOptions, progress: bool = True) -> SliceSet:
    """The slices of every source on the first source's frame, cached as one store."""
    frame = options.frame(sources[0])
    parts, keys, owner = [], [], {}
    for i, (source, offset) in enumerate(
        zip(sources, level_offsets(sources, options), strict=True)
    ):
        loaded = options.load(source, progress)
        for subject in np.unique(loaded.subject).tolist():
            if owner.setdefault(subject, i) != i:
                raise ValueError(
                    f"data.sources: subject {subject!r} is in both {sources[owner[subject]]} "
                    f"and {source}; expected each subject in one source"
                )
        parts.append(PartTask(source, offset, options))
        keys.append([source, offset, loaded.content_key])
    description = {"kind": MIXED, "size": options.size, "parts": keys, "frame": frame.to_dict()}
    key = cache_key(description)
    cache = SliceCache(options.cache_dir)
    cached = cache.get(MIXED, key)
    if cached is not None:
        return cached
    plan = DecodePlan(
        decode=decode_part,
        tasks=parts,
        source=" + ".join(sources),
        description="mixing sources",
        notes=tuple(f"{t.source}: its level 0 is the run's level {t.offset}" for t in parts),
        n_levels=frame.n_levels,
        pool_from=len(parts) + 1,  # one process: each part reads its own store
    )
    return cache.build(MIXED, key, plan, description, 0, progress)
