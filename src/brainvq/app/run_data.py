"""A run's data: the slices of its source at its working size, as its configuration says.

Its own module so that everything that needs a run's slices (the pipeline, the scans' reference
space, anomaly calibration, tuning, pruning, export) imports it without importing the pipeline.
"""

from __future__ import annotations

from pathlib import Path

from brainvq.data import load_slices
from brainvq.data.sliceset import SliceSet
from brainvq.run_config import RunConfig


def run_slices(config: RunConfig, source: str | None = None, progress: bool = True) -> SliceSet:
    """The slices of the run's data source (or of `source`), at the run's working size."""
    d = config.data
    return load_slices(
        source or d.source,
        size=d.size,
        cache_dir=Path(d.cache_dir) if d.cache_dir else None,
        n_levels=d.n_levels,
        z_range_mm=tuple(d.z_range_mm) if d.z_range_mm else None,
        seed=d.seed,
        demo_subjects=tuple(d.demo_subjects),
        progress=progress,
    )
