"""The anomaly thresholds of a run: calibrated on healthy slices, stored, reused, checked.

The calibration lives in RUN/anomaly/ (RunLayout.anomaly_calibration and
.anomaly_calibration_maps). By default it is made on first use, or by `calibrate_run`, from the
healthy slices of the run's validate split; `calibrate_run(healthy=PATH)` (`brainvq anomaly
calibrate --healthy PATH`) makes it from the user's own healthy scans instead (their site, their
scanner: the standard answer to a site shift), and it is then kept until the user recalibrates.
It is kept for the models (a fingerprint of their weights), settings and data it was made with;
for another alpha the thresholds are recomputed from the stored calibration maps without healing
again. The maps file also holds each calibration slice's median code NLL, which the shift check
(brainvq.evaluation.calibration_shift) compares a scan against.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from brainvq.app.anomaly_inputs import Inputs, load_inputs, resolve_levels
from brainvq.app.run_data import run_slices
from brainvq.config import ConfigError, from_dict, to_dict
from brainvq.evaluation.anomaly_calibration import (
    Calibration,
    CalibrationMaps,
    calibrate_thresholds,
    code_threshold,
)
from brainvq.evaluation.calibration_shift import slice_nll_medians
from brainvq.evaluation.conformal import flagged_share
from brainvq.inference.anomaly_maps import anomaly_maps
from brainvq.inference.codes import load_codes
from brainvq.inference.generate import RunModels, load_run_models
from brainvq.inference.slice_below import below_rows
from brainvq.io.atomic import atomic_path, atomic_write_json
from brainvq.io.bundle import WEIGHTS_FILE
from brainvq.run import RunLayout, load_run, read_json
from brainvq.run_config import AnomalyConfig, RunConfig

MAPS_VERSION = 2  # 2: the maps file holds each slice's median code NLL
USER_SOURCE = "healthy scans"  # how a calibration on the user's scans names its source


def models_fingerprint(models: RunModels) -> str:
    """A short hash of both models' weights: a calibration holds only for these."""
    h = hashlib.sha256()
    for bundle in (models.vqvae, models.prior):
        h.update((bundle.path / WEIGHTS_FILE).read_bytes())
    return h.hexdigest()[:16]


def _maps_key(models: str, source: str, settings: AnomalyConfig) -> str:
    """What the stored calibration maps depend on, as one string."""
    return json.dumps(
        {"version": MAPS_VERSION, "models": models, "source": source, "settings": to_dict(settings)}
    )


def anomaly_settings(config: RunConfig, n_heal: int | None = None) -> AnomalyConfig:
    """The run config's `anomaly:` section, with `n_heal` (--n-heal) over it when given."""
    return config.anomaly if n_heal is None else replace(config.anomaly, n_heal=n_heal)


def _whole_groups(group: np.ndarray, most: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted rows of whole groups (subjects, volumes) in a random order, as many as fit in
    `most` slices (at least one group)."""
    names = rng.permutation(np.unique(group))
    sizes = np.array([(group == g).sum() for g in names])
    keep = max(1, int((np.cumsum(sizes) <= most).sum()))
    return np.flatnonzero(np.isin(group, names[:keep]))


def _healthy_slices(run_dir, config, settings, models, healthy, threads, progress):
    """(images, levels, foreground or None, source, below_of or None) of the calibration
    slices. In 3D context (a prior with the neighbour, settings.context) they are whole
    subjects or volumes, each slice with its slice below (below_of), as the maps are made."""
    layout = RunLayout(run_dir)
    rng = np.random.default_rng(settings.seed)
    context = settings.context and models.prior.config.has_neighbour
    most = settings.calibration_slices
    group = None
    if healthy is None:
        validate = run_slices(config, progress=progress).require_split("validate")
        if context:
            pick = _whole_groups(validate.subject, most, rng)
        else:
            pick = np.sort(rng.permutation(len(validate))[:most])
        healthy_set = validate.subset(pick)
        inputs = Inputs(
            healthy_set.images,
            [str(f) for f in healthy_set.filename],
            healthy_set.level,
            layout.root,
        )
        group = healthy_set.subject
        source = f"{config.data.source} (validate split)"
    else:
        inputs = load_inputs(run_dir, healthy, threads=threads, progress=progress)
        if context and inputs.volumes:
            pick = _whole_groups(inputs.volume_of, most, rng)
        else:
            pick = np.sort(rng.permutation(len(inputs.images))[:most])
        inputs = inputs.subset(pick)
        group = inputs.volume_of if inputs.volumes else None
        what = f"{len(inputs.volumes)} volumes, " if inputs.volumes else ""
        source = f"{USER_SOURCE} {healthy} ({what}{len(pick)} slices)"
    levels, _, _ = resolve_levels(models, layout, inputs, None)
    below_of = None
    if context and group is not None and levels is not None:
        below_of = below_rows(group, levels)
    return inputs.images, levels, inputs.foreground, source, below_of


def calibrate_run(
    run_dir: str | Path,
    alpha: float = 0.01,
    n_heal: int | None = None,
    *,
    healthy: str | Path | None = None,
    models: RunModels | None = None,
    sampler: str = "cached",
    threads: int | None = None,
    progress: bool = True,
) -> Calibration:
    """Calibrate the run's anomaly thresholds at rate alpha on healthy slices: the run's validate
    split, or the user's healthy scans `healthy` (a NIfTI volume, a folder of them, or of
    slices); at most calibration_slices of them, a seeded random subset. Writes
    RUN/anomaly/calibration.json and calibration_maps.npz."""
    layout = RunLayout(run_dir)
    config = load_run(run_dir)
    settings = anomaly_settings(config, n_heal)
    models = models or load_run_models(run_dir)
    images, levels, foreground, source, below_of = _healthy_slices(
        run_dir, config, settings, models, healthy, threads, progress
    )
    train_codes = load_codes(layout.codes, "train")
    code_thr = code_threshold(models.prior.model, train_codes, settings)
    maps = anomaly_maps(
        models,
        images,
        levels,
        code_thr,
        settings,
        seed=settings.seed,
        sampler=sampler,
        progress=progress,
        threads=threads,
        foreground=foreground,
        below_of=below_of,
    )
    stats = CalibrationMaps.of(maps.maps, maps.foreground, maps.scores)
    nll_medians = slice_nll_medians(maps.nll, maps.foreground, models.vqvae.config.downsample)
    fingerprint = models_fingerprint(models)
    n_code_maps = min(settings.code_maps, len(train_codes.codes))
    with atomic_path(layout.anomaly_calibration_maps) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            values=stats.values,
            counts=stats.counts,
            scores=stats.scores,
            nll_medians=nll_medians,
            code_threshold=np.float64(code_thr),
            n_code_maps=np.int64(n_code_maps),
            key=np.array(_maps_key(fingerprint, source, settings)),
        )
    calibration = calibrate_thresholds(
        stats, alpha, code_thr, n_code_maps, settings, models=fingerprint, source=source
    )
    atomic_write_json(layout.anomaly_calibration, to_dict(calibration))
    return calibration


def read_calibration(run_dir: str | Path) -> Calibration | None:
    """RUN/anomaly/calibration.json, or None when the run has none yet."""
    path = RunLayout(run_dir).anomaly_calibration
    if not path.is_file():
        return None
    try:
        return from_dict(Calibration, read_json(path))
    except (ConfigError, json.JSONDecodeError) as e:
        raise ValueError(
            f"{path}: not a brainvq calibration ({e}); remove it or run "
            "`brainvq anomaly calibrate --run RUN`"
        ) from None


def _stored_maps(layout: RunLayout, key: str):
    """The stored calibration maps' arrays when their key is `key`, else None."""
    if not layout.anomaly_calibration_maps.is_file():
        return None
    with np.load(layout.anomaly_calibration_maps, allow_pickle=False) as f:
        if "key" not in f.files or str(f["key"]) != key:
            return None
        return {name: f[name] for name in f.files}


def run_calibration(
    run_dir: str | Path,
    alpha: float,
    settings: AnomalyConfig,
    models: RunModels,
    *,
    sampler: str = "cached",
    threads: int | None = None,
    progress: bool = True,
) -> tuple[Calibration, str | None]:
    """The run's calibration for alpha and settings: the stored one when it fits, re-thresholded
    from the stored maps when only alpha differs, else made now on the validate split (a
    calibration on the user's scans is never replaced silently). Returns (it, a note or None)."""
    layout = RunLayout(run_dir)
    stored = read_calibration(run_dir)
    fingerprint = models_fingerprint(models)
    fits = stored is not None and stored.models == fingerprint and stored.settings == settings
    if fits:
        maps = _stored_maps(layout, _maps_key(fingerprint, stored.source, settings))
        if stored.alpha == alpha and maps is not None:
            return stored, None
        if maps is not None:
            stats = CalibrationMaps(maps["values"], maps["counts"], maps["scores"])
            calibration = calibrate_thresholds(
                stats,
                alpha,
                float(maps["code_threshold"]),
                int(maps["n_code_maps"]),
                settings,
                models=fingerprint,
                source=stored.source,
            )
            atomic_write_json(layout.anomaly_calibration, to_dict(calibration))
            return calibration, f"thresholds recomputed for alpha {alpha}"
    if stored is not None and stored.source.startswith(USER_SOURCE):
        raise ValueError(
            f"{layout.anomaly_calibration} was calibrated on {stored.source} for other models "
            "or settings; recalibrate: `brainvq anomaly calibrate --run RUN --healthy PATH`"
        )
    if stored is None:
        why = "first use"
    elif stored.models != fingerprint:
        why = "the models changed"
    elif stored.settings != settings:
        why = "the settings changed"
    else:
        why = "the stored calibration maps are missing or from an older brainvq"
    calibration = calibrate_run(
        run_dir,
        alpha,
        settings.n_heal,
        models=models,
        sampler=sampler,
        threads=threads,
        progress=progress,
    )
    return calibration, (
        f"calibrated on {calibration.n_slices} healthy slices of {calibration.source} ({why}); "
        f"stored in {layout.anomaly_calibration}"
    )


def calibration_statistics(run_dir: str | Path, calibration: Calibration):
    """(nll_medians (n,), flagged shares (n,) at the pixel threshold) of the calibration
    slices, for the shift check."""
    maps = _stored_maps(
        RunLayout(run_dir),
        _maps_key(calibration.models, calibration.source, calibration.settings),
    )
    if maps is None:
        raise ValueError(f"{RunLayout(run_dir).anomaly_calibration_maps}: missing or stale")
    shares = flagged_share(maps["values"], maps["counts"], calibration.pixel_threshold)
    return maps["nll_medians"], shares
