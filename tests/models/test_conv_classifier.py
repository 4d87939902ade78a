"""The level and pair classifiers' configs share one check: each refuses every bad setting,
the pair classifier's a bad seed too (it had lost that check)."""

from __future__ import annotations

import dataclasses

import pytest

from brainvq.config import ConfigError
from brainvq.models.level_classifier import LevelClassifierConfig
from brainvq.models.pair_classifier import PairClassifierConfig

BAD = [
    ({"image_size": 2}, "image_size: expected >= 4"),
    ({"image_size": 30}, r"image_size: expected a multiple of 2\*\*len\(channels\)"),
    ({"channels": ()}, "channels: expected at least one conv block"),
    ({"channels": (8, 0)}, "channels: expected positive channel counts"),
    ({"epochs": 0}, "epochs: expected >= 1"),
    ({"batch_size": 0}, "batch_size: expected >= 1"),
    ({"lr": 0.0}, "lr: expected > 0"),
    ({"seed": -1}, r"seed: expected an integer seed in \[0, 4294967295\], got -1"),
    ({"seed": 2**32}, "seed: .* got 4294967296"),
    ({"seed": 1.5}, "seed: .* got 1.5"),
]


@pytest.mark.parametrize("config_class", [LevelClassifierConfig, PairClassifierConfig])
@pytest.mark.parametrize(("change", "match"), BAD)
def test_each_classifier_config_refuses_a_bad_setting(
    config_class: type, change: dict, match: str
) -> None:
    config = dataclasses.replace(config_class(channels=(8, 16)), **change)
    with pytest.raises(ConfigError, match=f"^{match}"):
        config.validate()


def test_the_pair_classifier_refuses_a_bad_seed() -> None:
    with pytest.raises(ConfigError, match="^seed: expected an integer seed"):
        PairClassifierConfig(seed=-3).validate()
    PairClassifierConfig(seed=2**32 - 1).validate()


def test_the_level_classifier_checks_its_own_head_first() -> None:
    with pytest.raises(ConfigError, match="^n_levels: expected >= 2, got 1"):
        LevelClassifierConfig(n_levels=1, seed=-1).validate()
