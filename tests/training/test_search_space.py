"""The search space of `brainvq tune`: the default spaces, the YAML forms, and one error per
way a space can be wrong (each names the key, before any trial runs)."""

from __future__ import annotations

import optuna
import pytest
from tiny import TINY_CONFIG

from brainvq.config import ConfigError
from brainvq.run_config import RunConfig, load_run_config
from brainvq.training.search_space import (
    Choices,
    FloatRange,
    IntRange,
    SearchSpace,
    default_space,
    nested,
    parse_space,
)


def tiny(space: dict | None = None, stage: str = "vqvae", **tune) -> RunConfig:
    overrides = {"tune": {stage: space or {}, **tune}}
    return load_run_config(TINY_CONFIG, overrides)


@pytest.mark.parametrize("config", [RunConfig(), load_run_config(TINY_CONFIG)])
def test_default_spaces_parse_and_contain_the_base_values(config: RunConfig) -> None:
    vqvae = parse_space("vqvae", config)
    assert [p.key for p in vqvae.params] == [
        "vqvae_train.lr",
        "vqvae_train.batch_size",
        "vqvae.channels",
        "vqvae.res_channels",
        "vqvae.beta",
        "vqvae.ssim_weight",
        "vqvae.codebook_size",
        "vqvae.decay",
    ]
    prior = parse_space("prior", config)
    assert [p.key for p in prior.params] == [
        "prior_train.lr",
        "prior_train.batch_size",
        "prior.channels",
        "prior.n_layers",
        "prior.dropout",
    ]
    for space in (vqvae, prior):
        baseline = space.baseline(config)
        assert baseline is not None
        values = space.values(baseline)
        for key, value in values.items():  # the baseline is the base config itself
            section, leaf = key.split(".")
            expected = getattr(getattr(config, section), leaf)
            assert value == (list(expected) if isinstance(expected, tuple) else expected), key


def test_default_widths_scale_the_base_widths() -> None:
    space = default_space("vqvae", load_run_config(TINY_CONFIG))  # channels [8, 16]
    assert space["vqvae.channels"] == [[4, 8], [8, 16], [16, 32]]
    assert space["vqvae_train.lr"] == {"low": 0.003 / 4, "high": 0.003 * 4, "log": True}


def test_yaml_forms_become_typed_params_and_sample_config_values() -> None:
    config = tiny(
        {
            "vqvae_train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
            "vqvae.res_channels": {"low": 4, "high": 16},
            "vqvae_train.batch_size": [8, 16],
            "vqvae.channels": {"choices": [[8, 16], [16, 32]]},
            "data.augment.enabled": [True, False],
            "adversarial.weight": {"low": 0.01, "high": 0.5, "log": True},
        }
    )
    space = parse_space("vqvae", config)
    kinds = {p.key: type(p) for p in space.params}
    assert kinds == {
        "vqvae_train.lr": FloatRange,
        "vqvae.res_channels": IntRange,
        "vqvae_train.batch_size": Choices,
        "vqvae.channels": Choices,
        "data.augment.enabled": Choices,
        "adversarial.weight": FloatRange,
    }
    trial = optuna.trial.FixedTrial(
        {
            "vqvae_train.lr": 2e-3,
            "vqvae.res_channels": 8,
            "vqvae_train.batch_size": 16,
            "vqvae.channels": "[16, 32]",  # list choices are stored as their YAML text
            "data.augment.enabled": True,
            "adversarial.weight": 0.1,
        }
    )
    values = space.suggest(trial)
    assert values["vqvae.channels"] == [16, 32]
    overrides = nested(values)
    assert overrides["vqvae"] == {"res_channels": 8, "channels": [16, 32]}
    assert overrides["data"] == {"augment": {"enabled": True}}
    built = load_run_config(TINY_CONFIG, overrides)
    assert built.vqvae.channels == (16, 32) and built.vqvae_train.batch_size == 16


def test_a_user_space_replaces_the_default_whole() -> None:
    space = parse_space("vqvae", tiny({"vqvae_train.lr": {"low": 1e-3, "high": 1e-2}}))
    assert [p.key for p in space.params] == ["vqvae_train.lr"]
    outside = tiny({"vqvae_train.lr": {"low": 1e-2, "high": 2e-2}})  # base lr 3e-3 is outside
    assert parse_space("vqvae", outside).baseline(outside) is None


BAD_SPACES = [
    ({"vqvae_train.lrr": [0.1]}, "tune.vqvae.vqvae_train.lrr", "unknown key 'lrr'"),
    ({"vqvae.nope.x": [1]}, "tune.vqvae.vqvae.nope.x", "unknown key 'nope'"),
    ({"vqvae.beta.x": [1]}, "tune.vqvae.vqvae.beta.x", "is a value, not a section"),
    ({"data.augment": [1]}, "tune.vqvae.data.augment", "tunes keys under"),
    ({"prior.channels": [8, 16]}, "tune.vqvae.prior.channels", "tunes keys under"),
    ({"data.size": [32, 64]}, "tune.vqvae.data.size", "tunes keys under"),
    ({"vqvae_train.max_minutes": [1, 2]}, "vqvae_train.max_minutes", "--trial-minutes"),
    ({"vqvae_train.devices": [1, 2]}, "vqvae_train.devices", "hardware"),
    ({"vqvae.image_size": [32, 64]}, "vqvae.image_size", "follows data.size"),
    ({"vqvae_train.lr": {"low": 0.01, "high": 0.001}}, "vqvae_train.lr", "empty range"),
    ({"vqvae_train.lr": {"low": 0.01, "high": 0.01}}, "vqvae_train.lr", "empty range"),
    ({"vqvae_train.batch_size": []}, "vqvae_train.batch_size", "no choices"),
    ({"vqvae_train.batch_size": [8, 8]}, "vqvae_train.batch_size", "given twice"),
    ({"vqvae.ssim_weight": {"low": 0, "high": 1, "log": True}}, "ssim_weight", "low > 0"),
    ({"vqvae.channels": {"low": 8, "high": 16}}, "vqvae.channels", "give choices"),
    ({"vqvae.res_channels": {"low": 4.5, "high": 16}}, "res_channels", "must be integers"),
    ({"vqvae_train.lr": {"low": 0.001}}, "vqvae_train.lr", "needs both low and high"),
    ({"vqvae_train.lr": {"low": 0.001, "hihg": 1}}, "tune.vqvae.vqvae_train.lr.hihg", "unknown"),
    ({"vqvae_train.lr": "fast"}, "tune.vqvae.vqvae_train.lr", "expected {low"),
    (
        {"vqvae_train.lr": {"low": 1e-3, "high": 1e-2, "choices": [1e-3]}},
        "vqvae_train.lr",
        "either low/high or choices",
    ),
    # values that the config itself refuses
    ({"vqvae_train.batch_size": {"low": 0, "high": 8}}, "the value 0 is refused", "must be >= 1"),
    ({"vqvae.channels": [[8, 16], [8, 16, 32]]}, "the value [8, 16, 32]", "needs 2 widths"),
    ({"vqvae.decay": [0.9, 1.0]}, "the value 1.0 is refused", "must be in (0, 1)"),
    ({"vqvae_train.batch_size": ["a", 8]}, "the value 'a' is refused", "expected an integer"),
]


@pytest.mark.parametrize(("space", "where", "why"), BAD_SPACES)
def test_each_bad_space_is_one_error_naming_the_key(space: dict, where: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_space("vqvae", tiny(space))
    message = str(info.value)
    assert where in message and why in message, message


def test_the_prior_stage_refuses_vqvae_keys_and_derived_keys() -> None:
    with pytest.raises(ConfigError, match="a prior study tunes keys under prior., prior_train."):
        parse_space("prior", tiny({"vqvae.beta": [0.1]}, stage="prior"))
    with pytest.raises(ConfigError, match="prior.codebook_size cannot be tuned: it follows"):
        parse_space("prior", tiny({"prior.codebook_size": [8, 16]}, stage="prior"))


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        ({"vqvae": [1, 2]}, "tune.vqvae: expected a mapping"),
        ({"prune_after": 2.0}, "tune.prune_after: must be in [0, 1]"),
        ({"startup_trials": -1}, "tune.startup_trials: must be >= 0"),
        ({"pruner": "median"}, "tune.pruner: unknown key"),
    ],
)
def test_the_tune_section_is_checked_when_the_config_loads(tune: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_run_config(TINY_CONFIG, {"tune": tune})


def test_describe_is_plain_json_data() -> None:
    import json

    space = parse_space("vqvae", load_run_config(TINY_CONFIG))
    described = space.describe()
    assert json.loads(json.dumps(described)) == described
    assert described["vqvae.channels"] == {
        "kind": "choices",
        "choices": ["[4, 8]", "[8, 16]", "[16, 32]"],
    }
    assert isinstance(space, SearchSpace)
