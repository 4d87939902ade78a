"""What weights an anomaly map's residuals (AnomalyConfig.weight): by default a redrawn code by
the excess of its input code's teacher-forced NLL over the code threshold (at least a floor), so
that codes which healing redrew only because an earlier redraw changed their prefix count
little; "resampled" (every redrawn code alike) for runs and calibrations saved before the
setting existed, which keep their maps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from brainvq.app.anomaly.calibration_store import CalibrationKey
from brainvq.config import ConfigError, to_dict
from brainvq.inference.anomaly_maps import (
    REDRAWN_FLOOR_NATS,
    foreground_of,
    map_weights,
    residual_map,
)
from brainvq.run_config import (
    LEGACY_ANOMALY,
    AnomalyConfig,
    RunConfig,
    load_run_config,
    save_run_config,
)


def test_a_redrawn_code_weighs_its_excess_over_the_code_threshold_at_least_the_floor() -> None:
    nll = np.array([[[0.5, 2.0], [3.5, 9.0]]], dtype=np.float32)  # (1, 2, 2) nats
    resampled = np.ones((1, 2, 2, 2), dtype=bool)
    resampled[0, 1, 1, 1] = False  # the second healing kept the most unlikely code
    weights = map_weights(AnomalyConfig(), resampled, nll, 2.5)
    assert weights.shape == (1, 2, 2, 2) and weights.dtype == np.float32
    floor = REDRAWN_FLOOR_NATS
    np.testing.assert_allclose(weights[0, 0], [[floor, floor], [1.0, 6.5]])
    np.testing.assert_allclose(weights[0, 1], [[floor, floor], [1.0, 0.0]])
    legacy = map_weights(AnomalyConfig(weight="resampled"), resampled, nll, 2.5)
    assert legacy is resampled


def test_a_cascade_of_redraws_counts_little_where_the_input_codes_were_likely() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (1, 32, 32), dtype=np.uint8)
    healed = rng.integers(0, 256, (1, 2, 32, 32), dtype=np.uint8)  # differs everywhere
    foreground = np.ones((1, 32, 32), dtype=bool)
    resampled = np.ones((1, 2, 8, 8), dtype=bool)  # healing redrew every code ...
    nll = np.zeros((1, 8, 8), dtype=np.float32)
    nll[0, 1, 1] = 10.0  # ... but only one input code was unlikely
    config = AnomalyConfig(mask_sigma=1.0, smooth_sigma=0.5)
    by_nll = residual_map(
        images, healed, map_weights(config, resampled, nll, 1.0), foreground, 4, config
    )
    # 9 nats over the unlikely code against the floor's 0.5 elsewhere
    assert by_nll[0, 4:8, 4:8].mean() > 2 * by_nll[0, 24:, 24:].mean() > 0
    legacy = replace(config, weight="resampled")
    by_redraw = residual_map(
        images, healed, map_weights(legacy, resampled, nll, 1.0), foreground, 4, legacy
    )
    assert by_redraw[0, 4:8, 4:8].mean() < 1.5 * by_redraw[0, 24:, 24:].mean()  # all alike


def test_the_weight_is_checked() -> None:
    with pytest.raises(ValueError, match="weight: must be one of code_nll, resampled"):
        AnomalyConfig(weight="both").validate()


def test_a_run_saved_before_the_settings_keeps_its_maps_and_a_new_config_takes_the_defaults(
    tmp_path: Path,
) -> None:
    saved = save_run_config(RunConfig(), tmp_path / "config.yaml")
    new = load_run_config(saved, saved=True).anomaly
    assert (new.weight, new.brain) == ("code_nll", "healed")
    doc = yaml.safe_load(saved.read_text(encoding="utf-8"))
    for key in LEGACY_ANOMALY:
        del doc["anomaly"][key]
    saved.write_text(yaml.safe_dump(doc), encoding="utf-8")
    old = load_run_config(saved, saved=True).anomaly
    assert (old.weight, old.brain) == ("resampled", "input") == tuple(LEGACY_ANOMALY.values())
    # the same file given as a config for a new run: the settings' defaults
    assert load_run_config(saved).anomaly.weight == "code_nll"
    # a flag over a saved run still wins
    over = load_run_config(saved, {"anomaly": {"weight": "code_nll"}}, saved=True)
    assert over.anomaly.weight == "code_nll" and over.anomaly.brain == "input"
    doc["anomaly"]["weight"] = "median"
    saved.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match="anomaly.weight"):
        load_run_config(saved, saved=True)


def test_a_dark_lesion_at_the_brains_edge_stays_in_the_brain_mask_its_healing_draws() -> None:
    image = np.zeros((1, 32, 32), dtype=np.uint8)
    image[0, 6:26, 6:26] = 150  # a square brain ...
    healed = np.repeat(image[:, None], 2, axis=1)  # ... that healing draws whole
    image[0, 6:12, 12:20] = 0  # a dark lesion through its upper edge
    lesion = np.zeros((1, 32, 32), dtype=bool)
    lesion[0, 6:12, 12:20] = True
    own = foreground_of(image, None, AnomalyConfig(brain="input"), healed)
    assert not (own & lesion).any()  # the slice's own outline leaves it out
    both = foreground_of(image, None, AnomalyConfig(), healed)
    assert both[lesion].all() and both.sum() == 400
    given = np.zeros((1, 32, 32), dtype=bool)
    assert foreground_of(image, given, AnomalyConfig(), healed) is given  # a known mask wins


def test_calibrations_of_the_two_weights_never_share_a_key() -> None:
    new = CalibrationKey("models", "prior", "validate", AnomalyConfig())
    old = CalibrationKey("models", "prior", "validate", AnomalyConfig(weight="resampled"))
    assert new.name != old.name
    assert to_dict(new.settings)["weight"] == "code_nll"
