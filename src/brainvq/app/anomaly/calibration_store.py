"""Where anomaly calibrations live, under which key, and how they are read and written.

A stored calibration is what the thresholds are computed from: the maps of healthy slices
(brainvq.evaluation.anomaly_calibration.CalibrationMaps), the code threshold, and what the
shift check reads of those slices (brainvq.evaluation.calibration_shift.SliceStatistics). Its
key is everything these depend on except alpha, which only re-thresholds the stored maps and
never heals again: the file format's version, the models' fingerprint (the VQ-VAE's and the
slice prior's weights, RunModels.slice_prior), the slice prior used, the settings (the run
config's `anomaly:` section with --n-heal over it: n_heal, temperature, seeds, ...) and the
healthy source. Each is one compressed .npz named by its key, written atomically once complete
(a failed or refused call leaves nothing); several coexist, each made once.

Where they are:
- RUN/anomaly/calibrations/<key>.npz, with RUN/anomaly/calibration.json naming the run's own
  (its thresholds at the alpha it was made for): what `brainvq anomaly calibrate` made, the
  only command that writes into a run;
- $BRAINVQ_CACHE/anomaly/<key>.npz (brainvq.data.cache.default_cache_dir): what a plain
  `brainvq anomaly` made when the run had none for its settings. A plain `brainvq anomaly` never
  changes the run folder, so a run shared by a lab, or on a read-only disk, gives everyone the
  same answers;
- RUN/anomaly/calibration_maps.npz (version 2, before keys): read as before, never written.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainvq.atomic import atomic_path
from brainvq.config import ConfigError, from_dict, to_dict
from brainvq.data.cache import default_cache_dir
from brainvq.evaluation.anomaly_calibration import Calibration, CalibrationMaps
from brainvq.evaluation.calibration_shift import SliceStatistics
from brainvq.run import RunLayout, read_json
from brainvq.run_config import LEGACY_ANOMALY, AnomalyConfig, with_legacy_anomaly

MAPS_VERSION = 3  # 3: keyed, brain masks and the shift statistics kept; 2: calibration_maps.npz
LEGACY_VERSION = 2
CACHE_FOLDER = "anomaly"
SUFFIX = ".npz"


def _named_settings(settings: AnomalyConfig) -> dict:
    """The settings as a key's name holds them: a key added since calibrations were first
    stored only when it is not its LEGACY_ANOMALY value, so that the calibrations stored before
    it existed keep their names."""
    doc = to_dict(settings)
    for key, legacy in LEGACY_ANOMALY.items():
        if doc.get(key) == legacy:
            del doc[key]
    return doc


@dataclass(frozen=True)
class CalibrationKey:
    """What a stored calibration depends on. models: a hash of the VQ-VAE's and the slice
    prior's weights; prior: the slice prior's bundle (its path in the run); source: the healthy
    slices (the run's validate split, or the user's scans); settings: `anomaly:`."""

    models: str
    prior: str
    source: str
    settings: AnomalyConfig

    @property
    def name(self) -> str:
        """The file name's stem: a hash of the key and the format's version."""
        text = json.dumps(
            {
                "version": MAPS_VERSION,
                "models": self.models,
                "prior": self.prior,
                "source": self.source,
                "settings": _named_settings(self.settings),
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


@dataclass(frozen=True)
class StoredCalibration:
    """A calibration's alpha-free part: key; code_threshold (nats); n_code_maps: the training
    code maps it was set on; maps: the healthy slices' maps; slices: their statistics for the
    shift check; version: MAPS_VERSION, or LEGACY_VERSION for a run calibrated before keys (no
    brain masks, no histograms or noise); path: where it was read from or written to."""

    key: CalibrationKey
    code_threshold: float
    n_code_maps: int
    maps: CalibrationMaps
    slices: SliceStatistics
    version: int = MAPS_VERSION
    path: Path | None = None

    @property
    def n_slices(self) -> int:
        return len(self.maps.counts)


def cache_folder() -> Path:
    """$BRAINVQ_CACHE/anomaly (default ~/.cache/brainvq/anomaly)."""
    return default_cache_dir() / CACHE_FOLDER


def run_path(run_dir: str | Path, key: CalibrationKey) -> Path:
    return RunLayout(run_dir).anomaly_calibrations / f"{key.name}{SUFFIX}"


def cache_path(key: CalibrationKey) -> Path:
    return cache_folder() / f"{key.name}{SUFFIX}"


def save(stored: StoredCalibration, path: str | Path) -> StoredCalibration:
    """Write `stored` to `path` atomically (the file appears only when complete). Returns it
    with its path."""
    path = Path(path)
    maps, slices = stored.maps, stored.slices
    if maps.foreground is None or slices.histograms is None or slices.noise is None:
        raise ValueError(f"{path}: a calibration of version {stored.version} is not written")
    meta = {
        "version": MAPS_VERSION,
        "key": {**to_dict(stored.key), "name": stored.key.name},
        "code_threshold": stored.code_threshold,
        "n_code_maps": stored.n_code_maps,
        "shape": list(maps.foreground.shape),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            meta=np.array(json.dumps(meta, sort_keys=True)),
            values=maps.values,
            counts=maps.counts,
            foreground=np.packbits(maps.foreground.reshape(-1)),
            levels=slices.levels,
            nll_medians=slices.nll_medians,
            histograms=slices.histograms,
            noise=slices.noise,
        )
    return StoredCalibration(
        stored.key, stored.code_threshold, stored.n_code_maps, maps, slices, MAPS_VERSION, path
    )


def load(path: str | Path) -> StoredCalibration:
    """The calibration stored at `path` (MAPS_VERSION); ValueError naming the file when it is
    not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            if meta.get("version") != MAPS_VERSION:
                raise ValueError(f"version {meta.get('version')}, expected {MAPS_VERSION}")
            shape = tuple(meta["shape"])
            count = int(np.prod(shape))
            foreground = np.unpackbits(f["foreground"], count=count).astype(bool).reshape(shape)
            arrays = {name: f[name] for name in f.files if name not in ("meta", "foreground")}
        key_doc = {k: v for k, v in meta["key"].items() if k != "name"}
        settings = from_dict(
            AnomalyConfig, with_legacy_anomaly(key_doc.pop("settings")), "settings."
        )
        key = CalibrationKey(settings=settings, **key_doc)
    except (OSError, KeyError, TypeError, ValueError, ConfigError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"{path}: not a brainvq calibration ({e}); remove it, or run "
            "`brainvq anomaly calibrate --run RUN` to make it again"
        ) from None
    return StoredCalibration(
        key=key,
        code_threshold=float(meta["code_threshold"]),
        n_code_maps=int(meta["n_code_maps"]),
        maps=CalibrationMaps(arrays["values"], arrays["counts"], foreground),
        slices=SliceStatistics(
            arrays["levels"], arrays["nll_medians"], arrays["histograms"], arrays["noise"]
        ),
        path=path,
    )


def find(run_dir: str | Path, key: CalibrationKey) -> StoredCalibration | None:
    """The calibration of `key` in the run, else in the user's cache, else None."""
    for path in (run_path(run_dir, key), cache_path(key)):
        if path.is_file():
            return load(path)
    return None


def read_chosen(run_dir: str | Path) -> Calibration | None:
    """RUN/anomaly/calibration.json (the run's own calibration), or None when it has none."""
    path = RunLayout(run_dir).anomaly_calibration
    if not path.is_file():
        return None
    try:
        doc = read_json(path)
        if isinstance(doc.get("settings"), dict):
            doc["settings"] = with_legacy_anomaly(doc["settings"])
        return from_dict(Calibration, doc)
    except (ConfigError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise ValueError(
            f"{path}: not a brainvq calibration ({e}); remove it or run "
            "`brainvq anomaly calibrate --run RUN`"
        ) from None


def _legacy_key(calibration: Calibration) -> str:
    """The key string a version-2 calibration_maps.npz holds."""
    return json.dumps(
        {
            "version": LEGACY_VERSION,
            "models": calibration.models,
            "source": calibration.source,
            # written before the LEGACY_ANOMALY keys existed (its maps: their legacy values,
            # as the settings read say), so its key string never held them
            "settings": _named_settings(calibration.settings),
        }
    )


def load_chosen(run_dir: str | Path, chosen: Calibration) -> StoredCalibration | None:
    """The stored maps of the run's own calibration `chosen`: RUN/anomaly/calibrations/<key>.npz,
    or for a run calibrated before keys RUN/anomaly/calibration_maps.npz (version 2). None when
    they are missing or belong to another calibration."""
    layout = RunLayout(run_dir)
    if chosen.key:
        path = layout.anomaly_calibrations / f"{chosen.key}{SUFFIX}"
        return load(path) if path.is_file() else None
    path = layout.anomaly_calibration_maps
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        if "key" not in f.files or str(f["key"]) != _legacy_key(chosen):
            return None
        arrays = {name: f[name] for name in f.files}
    key = CalibrationKey(chosen.models, "", chosen.source, chosen.settings)
    return StoredCalibration(
        key=key,
        code_threshold=float(arrays["code_threshold"]),
        n_code_maps=int(arrays["n_code_maps"]),
        maps=CalibrationMaps(arrays["values"], arrays["counts"], None, arrays["scores"]),
        slices=SliceStatistics(np.full(len(arrays["counts"]), -1), arrays["nll_medians"]),
        version=LEGACY_VERSION,
        path=path,
    )
