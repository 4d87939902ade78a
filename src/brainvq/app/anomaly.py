"""Anomaly maps of user slices with a run's VQ-VAE and prior, thresholded by the run's calibration.

`find_anomalies` loads the input (a PNG/JPEG, a folder of them, NIfTI volumes or an OASIS set) at
the model's working size, finds each slice's level, makes the maps (brainvq.inference.anomaly_maps)
and thresholds them (brainvq.evaluation.anomaly_calibration); `write_anomalies`
(brainvq.app.anomaly_files) writes them to a folder. The settings are the run config's
`anomaly:` section (`anomaly_settings`), with --n-heal over it.

The calibration lives in RUN/anomaly/ (RunLayout.anomaly_calibration and .anomaly_calibration_maps):
made on first use, or by `calibrate_run`, from the healthy slices of the run's validate split. It
is kept for the models (a fingerprint of their weights), settings and data it was made with; for
another alpha the thresholds are recomputed from the stored calibration maps without healing again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from brainvq.app.pipeline import run_slices
from brainvq.config import ConfigError, from_dict, to_dict
from brainvq.data import load_slices
from brainvq.data.imaging import IMAGE_SUFFIXES, prepare_slice
from brainvq.evaluation.anomaly_calibration import (
    Calibration,
    CalibrationMaps,
    calibrate_thresholds,
    code_threshold,
)
from brainvq.evaluation.generation_metrics import predict_levels
from brainvq.inference.anomaly_maps import MapSet, anomaly_maps
from brainvq.inference.codes import load_codes
from brainvq.inference.generate import RunModels, check_level, level_from_name, load_run_models
from brainvq.io.atomic import atomic_path, atomic_write_json
from brainvq.io.bundle import WEIGHTS_FILE, load_level_classifier
from brainvq.run import AnomalyConfig, RunConfig, RunLayout, load_run, read_json

LEVEL_FROM = ("input", "--level", "classifier", "none")  # where a slice's level came from


@dataclass(frozen=True)
class Inputs:
    """The slices to score: images (N, H, W) uint8 at the working size; names (N,) their input
    names (NIfTI slices: "<volume>#z<voxel index>"); levels (N,) int64, -1 when the input does
    not say; root: the input path (for NIfTI volumes: where their files are)."""

    images: np.ndarray
    names: list[str]
    levels: np.ndarray
    root: Path


def load_inputs(source: str | Path, size: int, n_levels: int, cache_dir: Path | None) -> Inputs:
    """A single PNG/JPEG (its level read from an OASIS-style name), or anything load_slices
    reads (every slice of every split, in the loader's order)."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        image = prepare_slice(path.read_bytes(), str(path), size)[0]  # (H, W)
        level = level_from_name(path)
        return Inputs(image[None], [path.name], np.array([-1 if level is None else level]), path)
    sliceset = load_slices(source, size=size, n_levels=n_levels, cache_dir=cache_dir)
    return Inputs(
        sliceset.images,
        [str(f) for f in sliceset.filename],
        sliceset.level.astype(np.int64),
        path,
    )


def resolve_levels(
    models: RunModels, layout: RunLayout, inputs: Inputs, level: int | None
) -> tuple[np.ndarray | None, list[str], list[str]]:
    """Each slice's conditioning level: the input's own (OASIS name, NIfTI position), else
    `level`, else the run's level classifier. Returns (levels (N,) int64 or None for an
    unconditional prior, where each came from (LEVEL_FROM), notes)."""
    n = len(inputs.images)
    if models.n_levels == 0:
        check_level(models, level)  # refuses a --level
        return None, ["none"] * n, []
    if level is not None:
        check_level(models, level)
    known = inputs.levels >= 0
    wrong = np.nonzero(known & (inputs.levels >= models.n_levels))[0]
    if len(wrong):
        i = int(wrong[0])
        raise ValueError(
            f"{inputs.names[i]}: its name or position says level {int(inputs.levels[i])}, but "
            f"this run's prior knows levels 0-{models.n_levels - 1}; rename the input"
        )
    levels = inputs.levels.copy()
    origin = np.where(known, "input", "--level" if level is not None else "classifier")
    notes = []
    if level is not None and known.all():
        notes.append(f"--level {level} not used: every slice's name or position gives its level")
    if not known.all():
        unknown = int((~known).sum())
        if level is not None:
            levels[~known] = level
            notes.append(f"{unknown} of {n} slices have no level in their name: --level {level}")
        else:
            classifier = load_level_classifier(layout.level_classifier).model
            levels[~known] = predict_levels(classifier, inputs.images[~known])
            notes.append(
                f"{unknown} of {n} slices have no level in their name: levels predicted by the "
                f"run's level classifier ({layout.level_classifier}); give --level K to set them"
            )
    return levels, [str(o) for o in origin], notes


def models_fingerprint(models: RunModels) -> str:
    """A short hash of both models' weights: a calibration holds only for these."""
    h = hashlib.sha256()
    for bundle in (models.vqvae, models.prior):
        h.update((bundle.path / WEIGHTS_FILE).read_bytes())
    return h.hexdigest()[:16]


def _maps_key(models: str, source: str, settings: AnomalyConfig) -> str:
    """What the stored calibration maps depend on, as one string."""
    return json.dumps({"models": models, "source": source, "settings": to_dict(settings)})


def anomaly_settings(config: RunConfig, n_heal: int | None = None) -> AnomalyConfig:
    """The run config's `anomaly:` section, with `n_heal` (--n-heal) over it when given."""
    return config.anomaly if n_heal is None else replace(config.anomaly, n_heal=n_heal)


def calibrate_run(
    run_dir: str | Path,
    alpha: float = 0.01,
    n_heal: int | None = None,
    *,
    models: RunModels | None = None,
    sampler: str = "cached",
    threads: int | None = None,
    progress: bool = True,
) -> Calibration:
    """Calibrate the run's anomaly thresholds at rate alpha on the healthy slices of its validate
    split (at most calibration_slices, a seeded random subset; settings: anomaly_settings) and
    write RUN/anomaly/calibration.json and calibration_maps.npz."""
    layout = RunLayout(run_dir)
    config = load_run(run_dir)
    settings = anomaly_settings(config, n_heal)
    models = models or load_run_models(run_dir)
    validate = run_slices(config, progress=progress).require_split("validate")
    rng = np.random.default_rng(settings.seed)
    pick = np.sort(rng.permutation(len(validate))[: settings.calibration_slices])
    healthy = validate.subset(pick)
    inputs = Inputs(healthy.images, [str(f) for f in healthy.filename], healthy.level, layout.root)
    levels, _, _ = resolve_levels(models, layout, inputs, None)
    train_codes = load_codes(layout.codes, "train")
    code_thr = code_threshold(models.prior.model, train_codes, settings)
    maps = anomaly_maps(
        models,
        healthy.images,
        levels,
        code_thr,
        settings,
        seed=settings.seed,
        sampler=sampler,
        progress=progress,
        threads=threads,
    )
    stats = CalibrationMaps.of(maps.maps, maps.foreground, maps.scores)
    fingerprint = models_fingerprint(models)
    source = f"{config.data.source} (validate split)"
    n_code_maps = min(settings.code_maps, len(train_codes.codes))
    with atomic_path(layout.anomaly_calibration_maps) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            values=stats.values,
            counts=stats.counts,
            scores=stats.scores,
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
    from the stored maps when only alpha differs, else made now. Returns (it, a note or None)."""
    layout = RunLayout(run_dir)
    stored = read_calibration(run_dir)
    fingerprint = models_fingerprint(models)
    if stored is not None and stored.models == fingerprint and stored.settings == settings:
        if stored.alpha == alpha:
            return stored, None
        if layout.anomaly_calibration_maps.is_file():
            with np.load(layout.anomaly_calibration_maps, allow_pickle=False) as f:
                if str(f["key"]) == _maps_key(fingerprint, stored.source, settings):
                    stats = CalibrationMaps(f["values"], f["counts"], f["scores"])
                    calibration = calibrate_thresholds(
                        stats,
                        alpha,
                        float(f["code_threshold"]),
                        int(f["n_code_maps"]),
                        settings,
                        models=fingerprint,
                        source=stored.source,
                    )
                    atomic_write_json(layout.anomaly_calibration, to_dict(calibration))
                    return calibration, f"thresholds recomputed for alpha {alpha}"
    if stored is None:
        why = "first use"
    elif stored.models != fingerprint:
        why = "the models changed"
    elif stored.settings != settings:
        why = "the settings changed"
    else:
        why = f"alpha changed to {alpha} and the stored calibration maps do not fit"
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


@dataclass(frozen=True)
class AnomalyResult:
    """Anomaly maps of N input slices, in input order, at the model's working size.

    names: input names; levels: (N,) int64 (-1: unconditional prior); level_from: LEVEL_FROM
    per slice; images: (N, H, W) uint8; maps: (N, H, W) float32, higher = more anomalous;
    masks: (N, H, W) bool, maps above the calibrated pixel threshold; scores: (N,) float64;
    flagged: (N,) bool, scores above the calibrated slice threshold; details: the MapSet
    (healed slices, codes, NLL maps); notes: what a user should know (levels, calibration)."""

    names: list[str]
    levels: np.ndarray
    level_from: list[str]
    images: np.ndarray
    maps: np.ndarray
    masks: np.ndarray
    scores: np.ndarray
    flagged: np.ndarray
    calibration: Calibration
    details: MapSet
    root: Path
    notes: list[str]


def check_options(alpha: float, n_heal: int | None, seed: int) -> None:
    """ValueError naming the flag for an alpha outside (0, 1), n_heal < 1 or a seed < 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"--alpha {alpha}: expected a false-positive rate in (0, 1)")
    if n_heal is None:
        pass
    elif isinstance(n_heal, bool) or not isinstance(n_heal, int) or n_heal < 1:
        raise ValueError(f"--n-heal {n_heal}: expected an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed {seed}: expected an integer >= 0")


def find_anomalies(
    run_dir: str | Path,
    source: str | Path,
    *,
    alpha: float = 0.01,
    n_heal: int | None = None,
    level: int | None = None,
    seed: int = 0,
    sampler: str = "cached",
    threads: int | None = None,
    progress: bool = True,
) -> AnomalyResult:
    """Anomaly maps, masks and slice scores of every slice of `source` (see the module
    docstring), calibrated first if the run has no calibration for these settings (the run
    config's `anomaly:` section; n_heal: its n_heal unless given)."""
    check_options(alpha, n_heal, seed)
    layout = RunLayout(run_dir)
    config = load_run(run_dir)
    models = load_run_models(run_dir)
    size = models.vqvae.config.image_size
    n_levels = models.n_levels or config.data.n_levels
    cache = Path(config.data.cache_dir) if config.data.cache_dir else None
    inputs = load_inputs(source, size, n_levels, cache)
    levels, level_from, notes = resolve_levels(models, layout, inputs, level)
    settings = anomaly_settings(config, n_heal)
    calibration, note = run_calibration(
        run_dir, alpha, settings, models, sampler=sampler, threads=threads, progress=progress
    )
    if note:
        notes.append(note)
    details = anomaly_maps(
        models,
        inputs.images,
        levels,
        calibration.code_threshold,
        settings,
        seed=seed,
        sampler=sampler,
        progress=progress,
        threads=threads,
    )
    return AnomalyResult(
        names=inputs.names,
        levels=np.full(len(inputs.names), -1) if levels is None else levels,
        level_from=level_from,
        images=inputs.images,
        maps=details.maps,
        masks=details.maps > calibration.pixel_threshold,
        scores=details.scores,
        flagged=details.scores > calibration.slice_threshold,
        calibration=calibration,
        details=details,
        root=inputs.root,
        notes=notes,
    )
