"""A run's data: the kind of its source, its slices at its working size, and its place in the
reference space (its frame, and its training data's intensities on it), as its configuration
and RUN/space.json say.

Its own module so that every workflow that needs one of them (the pipeline, scans brought to a
run, synthetic subjects, anomaly calibration, tuning, pruning, export, the notebook API) imports
it without importing another workflow. Each costs what it gives: `run_frame` reads
RUN/space.json, or takes the frame its source's kind gives, and never loads a slice;
`run_space` adds the intensity landmarks, learned from the training slices (and written to
RUN/space.json) when the run has none yet; `run_slices` loads the slices.
"""

from __future__ import annotations

from pathlib import Path

from brainvq.atomic import atomic_write_json
from brainvq.data import load_slices
from brainvq.data.loader import DEMO, resolve_source
from brainvq.data.mixed import load_mixed
from brainvq.data.sliceset import SliceSet
from brainvq.data.space.frame import Frame
from brainvq.data.space.run_space import (
    RunSpace,
    frame_for_source,
    learn_outside_profile,
    learn_run_landmarks,
)
from brainvq.run import RunLayout, load_run, read_json
from brainvq.run_config import RunConfig


def source_kind(config: RunConfig) -> str:
    """The kind of the run's data source: demo, oasis, nifti or images (a folder of slices)."""
    if config.data.source == DEMO:
        return DEMO
    return resolve_source(config.data.source, config.data.n_levels).kind


def run_slices(config: RunConfig, source: str | None = None, progress: bool = True) -> SliceSet:
    """The slices of the run's data source (or of `source`), at the run's working size; with
    `data.sources`, of all its sources on its frame (brainvq.data.mixed)."""
    d = config.data
    if d.sources and source is None:
        return load_mixed((d.source, *d.sources), d.source_options(), progress)
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


def saved_space(run_dir: str | Path) -> RunSpace | None:
    """RUN/space.json, or None when the run has none yet; ValueError when it is not one."""
    layout = RunLayout(run_dir)
    doc = read_json(layout.space)
    if not doc:
        return None
    try:
        return RunSpace.from_dict(doc)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{layout.space}: not a brainvq space record ({e})") from None


def source_frame(config: RunConfig) -> tuple[Frame, str]:
    """(frame, how it is known) that the kind of the run's source gives (frame_for_source)."""
    z_range = tuple(config.data.z_range_mm) if config.data.z_range_mm else None
    return frame_for_source(source_kind(config), config.data.n_levels, z_range)


def run_frame(run_dir: str | Path, config: RunConfig | None = None) -> tuple[Frame, str]:
    """The run's frame and how it is known (RunSpace.frame_source): RUN/space.json's, else the
    one its source's kind gives. Loads no slice and writes nothing."""
    saved = saved_space(run_dir)
    if saved is not None:
        return saved.frame, saved.frame_source
    return source_frame(config or load_run(run_dir))


def run_space(run_dir: str | Path, config: RunConfig | None = None) -> RunSpace:
    """The run's RunSpace: RUN/space.json, or made now (frame from the source's kind, landmarks
    from its training slices) and written there."""
    saved = saved_space(run_dir)
    if saved is not None:
        return saved
    layout = RunLayout(run_dir)
    config = config or load_run(run_dir)
    frame, how = source_frame(config)
    train = run_slices(config, progress=False).require_split("train")
    if train.n_levels and train.n_levels != frame.n_levels:
        raise ValueError(
            f"{layout.root}: its slices have {train.n_levels} levels, its frame "
            f"{frame.n_levels}; expected them to agree"
        )
    landmarks = learn_run_landmarks(train.images, train.level, train.subject, frame)
    outside = learn_outside_profile(train.images, train.level, frame)
    space = RunSpace(frame, how, landmarks, outside)
    atomic_write_json(layout.space, space.to_dict())
    return space
