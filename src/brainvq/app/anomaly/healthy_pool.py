"""The healthy pool a calibration is made on: at most `calibration_slices` healthy slices, a seeded
random subset of the run's validate split or of the user's own healthy scans.

A whole-brain run has 150 levels a volume where OASIS's band has 32, so a site's folder of
healthy scans is five times as many slices, and the pool must not hold them all: volumes are
aligned one at a time (brainvq.app.scans) and only the slices that can still be chosen are kept,
so the memory is that of the pool and one volume, however many volumes the folder holds.

The subset is drawn by random keys: every slice (or, in 3D context, every volume, whose slices go
together) gets a uniform key from the seeded generator in the order the scans are read; the
pool is the slices with the smallest keys (in 3D context: the volumes with the smallest keys, as
many as fit in calibration_slices, at least one). Whatever is dropped while reading could not
be chosen at the end: a later slice can only push it further out. Every slice (volume) is
equally likely to be chosen, as with a random permutation, and the draw repeats for the same
seed and scans.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainvq.app.anomaly.inputs import Inputs, load_inputs, refuse_slices, resolve_levels
from brainvq.app.run_data import run_slices
from brainvq.app.scans import align_inputs, input_scans, slice_names
from brainvq.inference.run_models import RunModels
from brainvq.inference.slice_below import below_rows
from brainvq.progress import progress as progress_bar
from brainvq.run import RunLayout
from brainvq.run_config import AnomalyConfig, RunConfig

USER_SOURCE = "healthy scans"  # how a calibration on the user's scans names its source


def validate_source(config: RunConfig) -> str:
    return f"{config.data.source} (validate split)"


def whole_groups(group: np.ndarray, most: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted rows of whole groups (subjects, volumes) in a random order, as many as fit in
    `most` slices (at least one group)."""
    names = rng.permutation(np.unique(group))
    sizes = np.array([(group == g).sum() for g in names])
    keep = max(1, int((np.cumsum(sizes) <= most).sum()))
    return np.flatnonzero(np.isin(group, names[:keep]))


@dataclass(frozen=True)
class HealthySlices:
    """The calibration slices: images (n, H, W) uint8, levels (n,) or None, foreground
    (n, H, W) bool or None, source (how the key names them), below_of (n,) or None (3D
    context: each slice's slice below among them), group (n,) or None (a 3D run: the subject
    or volume of each slice, whole volumes drawn; levels are then their frame levels)."""

    images: np.ndarray
    levels: np.ndarray | None
    foreground: np.ndarray | None
    source: str
    below_of: np.ndarray | None
    group: np.ndarray | None = None


class _Pool:
    """The slices that can still be chosen, by their keys (module docstring)."""

    def __init__(self, most: int, context: bool) -> None:
        self.most, self.context = most, context
        self.parts: list[tuple[np.ndarray, Inputs]] = []  # (keys (n,), slices) per volume

    def add(self, keys: np.ndarray, slices: Inputs) -> None:
        self.parts.append((keys, slices))
        keys_all = np.concatenate([k for k, _ in self.parts])
        if self.context:  # one key per volume: the volumes that fit, smallest keys first
            firsts = np.array([k[0] for k, _ in self.parts])
            sizes = np.array([len(k) for k, _ in self.parts])
            order = np.argsort(firsts, kind="stable")
            fits = max(1, int((np.cumsum(sizes[order]) <= self.most).sum()))
            kept = set(order[:fits].tolist())
            self.parts = [p for i, p in enumerate(self.parts) if i in kept]
            return
        if len(keys_all) <= self.most:
            return
        limit = np.partition(keys_all, self.most - 1)[self.most - 1]
        parts = []
        for keys, inputs in self.parts:
            rows = np.flatnonzero(keys <= limit)
            if len(rows):
                parts.append((keys[rows], inputs.subset(rows)))
        self.parts = parts

    def inputs(self, root: Path) -> Inputs:
        """The chosen slices, volume by volume in reading order (volume_of: its index)."""
        parts = [inputs for _, inputs in self.parts]
        return Inputs(
            images=np.concatenate([p.images for p in parts]),
            names=[n for p in parts for n in p.names],
            levels=np.concatenate([p.levels for p in parts]),
            root=root,
            volume_of=np.concatenate([p.volume_of for p in parts]),
            foreground=np.concatenate([p.foreground for p in parts]),
        )


def healthy_volume_slices(
    run_dir,
    healthy: Path,
    found,
    most: int,
    rng: np.random.Generator,
    context: bool,
    threads,
    progress: bool,
) -> Inputs:
    """The pool of the user's healthy volumes `found` (brainvq.app.scans.input_scans), aligned
    one at a time (module docstring); volume_of: each slice's volume among all of found.scans."""
    pool = _Pool(most, context)
    scans = found.scans
    for i, record in enumerate(progress_bar(scans, len(scans), "aligning volumes", progress)):
        (aligned,) = align_inputs(run_dir, [record], threads=threads, progress=False)
        n = len(aligned.levels)
        keys = np.full(n, rng.random()) if context else rng.random(n)
        slices = Inputs(
            aligned.images,
            slice_names(aligned, healthy),
            aligned.levels.astype(np.int64),
            healthy,
            volume_of=np.full(n, i),
            foreground=aligned.brain,
        )
        pool.add(keys, slices)
    return pool.inputs(healthy)


def healthy_slices(
    run_dir,
    config: RunConfig,
    settings: AnomalyConfig,
    models: RunModels,
    healthy,
    threads,
    progress,
    series=None,
) -> HealthySlices:
    """At most calibration_slices healthy slices, a seeded random subset: of the run's
    validate split, or of the user's healthy scans `healthy` (volumes as in the module
    docstring; 2D slices all read, then drawn). In 3D context (a slice prior with the
    neighbour, settings.context) whole subjects or volumes, each slice with its slice below, as
    the maps are made; a 3D run takes whole subjects or volumes always (it codes them whole),
    and no slices. series: the DICOM series of `healthy` to take (`--series`)."""
    layout = RunLayout(run_dir)
    rng = np.random.default_rng(settings.seed)
    whole = models.dims == 3
    context = whole or (settings.context and models.anomaly_prior.config.has_neighbour)
    most = settings.calibration_slices
    found = None if healthy is None else input_scans(healthy, series)
    if healthy is None:
        validate = run_slices(config, progress=progress).require_split("validate")
        if context:
            pick = whole_groups(validate.subject, most, rng)
        else:
            pick = np.sort(rng.permutation(len(validate))[:most])
        chosen = validate.subset(pick)
        inputs = Inputs(chosen.images, [str(f) for f in chosen.filename], chosen.level, layout.root)
        group, source = chosen.subject, validate_source(config)
    elif found is not None:
        path = Path(healthy)
        inputs = healthy_volume_slices(run_dir, path, found, most, rng, context, threads, progress)
        group = inputs.volume_of
        picked = f" --series {series}" if series is not None else ""
        source = (
            f"{USER_SOURCE} {healthy}{picked} ({len(found.scans)} volumes, "
            f"{len(inputs.images)} slices)"
        )
    elif whole:
        raise ValueError(refuse_slices(healthy, "calibrates on"))
    else:
        inputs = load_inputs(run_dir, healthy, threads=threads, progress=progress)
        pick = np.sort(rng.permutation(len(inputs.images))[:most])
        inputs = inputs.subset(pick)
        group = None
        source = f"{USER_SOURCE} {healthy} ({len(pick)} slices)"
    if whole:  # the frame levels, which place each volume's latent levels
        return HealthySlices(inputs.images, inputs.levels, inputs.foreground, source, None, group)
    levels, _, _ = resolve_levels(models, layout, inputs, None)
    below_of = None
    if context and group is not None and levels is not None:
        below_of = below_rows(group, levels)
    return HealthySlices(inputs.images, levels, inputs.foreground, source, below_of)
