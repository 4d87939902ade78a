"""The search space of a tuning study: dotted config keys -> ranges or choices.

A space comes from the `tune:` section of the run config (brainvq.run_config.TuneConfig), one per
stage, or is brainvq's default for the stage, drawn around the base config's own values. It
is parsed and checked against the config before any trial runs: an unknown key, a key the
stage cannot change, an empty range, or a value the config would refuse is one ConfigError
that names the key.

    vqvae_train.lr: {low: 5.0e-4, high: 8.0e-3, log: true}   # a float range (log scale)
    vqvae.res_channels: {low: 16, high: 64}                  # an integer range
    vqvae_train.batch_size: [8, 16, 32]                       # choices
    vqvae.channels: [[16, 32], [32, 64]]                      # choices of a list-valued key
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

import optuna
import yaml

from brainvq.config import ConfigError, from_dict, to_dict
from brainvq.run_config import TUNE_STAGES, RunConfig, load_run_config, merge

# The parts of the config that a study of each stage may change.
SECTIONS = {
    "vqvae": ("vqvae", "vqvae_train", "data.augment", "adversarial"),
    "prior": ("prior", "prior_train"),
}
# Keys no study tunes, and why.
FIXED = {
    "vqvae.image_size": "it follows data.size",
    "prior.codebook_size": "it follows the VQ-VAE's codebook size",
    "prior.n_levels": "it follows the data's slice levels",
    "prior.map_size": "it follows the VQ-VAE's code maps",
}
FIXED_TRAIN = {
    "max_minutes": "--trial-minutes sets every trial's budget",
    "accelerator": "it is hardware, not a hyperparameter",
    "devices": "it is hardware, not a hyperparameter (run one tuning worker per device)",
    "num_nodes": "it is hardware, not a hyperparameter (run one tuning worker per machine)",
    "strategy": "it is hardware, not a hyperparameter",
    "threads": "it is hardware, not a hyperparameter",
}


@dataclass
class RangeSpec:
    """One entry of a space as written in YAML: {low, high, log} or {choices}."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class FloatRange:
    key: str
    low: float
    high: float
    log: bool = False

    def suggest(self, trial: optuna.Trial) -> float:
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def probes(self) -> tuple[Any, ...]:
        return (self.low, self.high)

    def label(self, value: Any) -> float | None:
        """The value as Optuna stores it, or None when it lies outside the range."""
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok and self.low <= value <= self.high else None

    def describe(self) -> dict[str, Any]:
        return {"kind": "float", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class IntRange:
    key: str
    low: int
    high: int
    log: bool = False

    def suggest(self, trial: optuna.Trial) -> int:
        return trial.suggest_int(self.key, self.low, self.high, log=self.log)

    def probes(self) -> tuple[Any, ...]:
        return (self.low, self.high)

    def label(self, value: Any) -> int | None:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value if ok and self.low <= value <= self.high else None

    def describe(self) -> dict[str, Any]:
        return {"kind": "int", "low": self.low, "high": self.high, "log": self.log}


def choice_label(value: Any) -> Any:
    """How Optuna stores a choice: scalars as they are, lists as their YAML text ("[16, 32]")."""
    if isinstance(value, (list, tuple)):
        return yaml.safe_dump(list(value), default_flow_style=True).strip()
    return value


@dataclass(frozen=True)
class Choices:
    key: str
    choices: tuple[Any, ...]  # the config values (lists for list-valued keys)

    @property
    def labels(self) -> tuple[Any, ...]:
        return tuple(choice_label(c) for c in self.choices)

    def suggest(self, trial: optuna.Trial) -> Any:
        label = trial.suggest_categorical(self.key, self.labels)
        return self.choices[self.labels.index(label)]

    def probes(self) -> tuple[Any, ...]:
        return self.choices

    def label(self, value: Any) -> Any:
        label = choice_label(value)
        return label if label in self.labels else None

    def describe(self) -> dict[str, Any]:
        return {"kind": "choices", "choices": list(self.labels)}


Param = FloatRange | IntRange | Choices


def nested(values: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1, "a.c": 2} -> {"a": {"b": 1, "c": 2}}: config overrides from dotted keys."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        node = out
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return out


def lookup(config: RunConfig, key: str) -> Any:
    """The value of dotted `key` in `config`."""
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


@dataclass(frozen=True)
class SearchSpace:
    """The parameters one study samples for every trial, in a fixed order."""

    stage: str
    params: tuple[Param, ...]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample every parameter for `trial`: dotted key -> config value."""
        return {p.key: p.suggest(trial) for p in self.params}

    def values(self, labels: dict[str, Any]) -> dict[str, Any]:
        """Config values from the values Optuna stored (a trial's `params`)."""
        out = {}
        for p in self.params:
            if p.key in labels:
                label = labels[p.key]
                out[p.key] = p.choices[p.labels.index(label)] if isinstance(p, Choices) else label
        return out

    def baseline(self, config: RunConfig) -> dict[str, Any] | None:
        """`config`'s own values as Optuna params, or None if any lies outside the space."""
        labels = {p.key: p.label(to_plain(lookup(config, p.key))) for p in self.params}
        return None if any(v is None for v in labels.values()) else labels

    def describe(self) -> dict[str, dict[str, Any]]:
        """JSON-ready: key -> {kind, low, high, log} or {kind, choices}."""
        return {p.key: p.describe() for p in self.params}


def to_plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _halves(value: int, least: int = 1) -> list[int]:
    return sorted({max(least, value // 2), value, value * 2})


def _around(value: float, factor: float = 4.0) -> dict[str, Any]:
    return {"low": value / factor, "high": value * factor, "log": True}


def default_space(stage: str, base: RunConfig) -> dict[str, Any]:
    """brainvq's default space for `stage`, around `base`'s values (which it contains):

    vqvae: learning rate (/4..x4, log), batch size, widths and residual width (/2, x1, x2),
    beta (log), SSIM weight, codebook size (/2, x1, x2) and, with EMA updates, the decay;
    prior: learning rate (/4..x4, log), batch size, channels (/2, x1, x2), layers, dropout.
    """
    if stage == "vqvae":
        model, train = base.vqvae, base.vqvae_train
        widths = [[max(1, c // 2) for c in model.channels], list(model.channels)]
        widths.append([c * 2 for c in model.channels])
        space: dict[str, Any] = {
            "vqvae_train.lr": _around(train.lr),
            "vqvae_train.batch_size": _halves(train.batch_size),
            "vqvae.channels": [w for i, w in enumerate(widths) if w not in widths[:i]],
            "vqvae.res_channels": _halves(model.res_channels),
            "vqvae.beta": (
                {"low": min(0.1, model.beta), "high": max(1.0, model.beta), "log": True}
                if model.beta > 0
                else {"low": 0.0, "high": 1.0}
            ),
            "vqvae.ssim_weight": {"low": 0.0, "high": max(0.5, model.ssim_weight)},
            "vqvae.codebook_size": _halves(model.codebook_size, least=2),
        }
        if model.update == "ema":
            space["vqvae.decay"] = sorted({0.95, 0.99, 0.995, model.decay})
        return space
    if stage == "prior":
        model, train = base.prior, base.prior_train
        return {
            "prior_train.lr": _around(train.lr),
            "prior_train.batch_size": _halves(train.batch_size),
            "prior.channels": _halves(model.channels),
            "prior.n_layers": {
                "low": max(1, model.n_layers // 2),
                "high": model.n_layers + max(1, model.n_layers // 2),
            },
            "prior.dropout": {"low": 0.0, "high": max(0.3, model.dropout)},
        }
    raise ValueError(f"stage: expected one of {list(TUNE_STAGES)}, got {stage!r}")


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def field_type(where: str, key: str) -> Any:
    """The type of dotted `key` in RunConfig (Optional stripped); ConfigError if unknown."""
    cls: Any = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        if part not in hints:
            section = ".".join(parts[:i]) or "the config"
            raise ConfigError(
                f"{where}: unknown key {part!r} (known keys of {section}: "
                f"{', '.join(sorted(hints))})"
            )
        tp = _strip_optional(hints[part])
        if i < len(parts) - 1 and not dataclasses.is_dataclass(tp):
            raise ConfigError(f"{where}: {'.'.join(parts[: i + 1])} is a value, not a section")
        cls = tp
    return cls


def _check_key(stage: str, where: str, key: str) -> Any:
    sections = SECTIONS[stage]
    if not any(key.startswith(section + ".") for section in sections):
        raise ConfigError(
            f"{where}: a {stage} study tunes keys under {', '.join(s + '.' for s in sections)} only"
        )
    tp = field_type(where, key)
    section, _, leaf = key.rpartition(".")
    why = FIXED.get(key) or (FIXED_TRAIN.get(leaf) if section.endswith("_train") else None)
    if why:
        raise ConfigError(f"{where}: {key} cannot be tuned: {why}")
    return tp


def _parse_param(stage: str, key: str, spec: Any, tp: Any) -> Param:
    where = f"tune.{stage}.{key}"
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where}: expected {{low: L, high: H[, log: true]}} or a list of choices, got {spec!r}"
        )
    parsed = from_dict(RangeSpec, spec, prefix=f"{where}.")
    if parsed.choices is not None:
        if parsed.low is not None or parsed.high is not None:
            raise ConfigError(f"{where}: give either low/high or choices, not both")
        choices = tuple(parsed.choices)
        if not choices:
            raise ConfigError(f"{where}: no choices (an empty list)")
        labels = [choice_label(c) for c in choices]
        repeated = [label for i, label in enumerate(labels) if label in labels[:i]]
        if repeated:
            raise ConfigError(f"{where}: the choice {repeated[0]!r} is given twice")
        return Choices(key, tuple(to_plain(c) for c in choices))
    if parsed.low is None or parsed.high is None:
        raise ConfigError(f"{where}: a range needs both low and high (or give choices)")
    if tp not in (int, float):
        name = getattr(tp, "__name__", str(tp))
        raise ConfigError(f"{where}: {key} is a {name}: give choices, not a range")
    low, high = parsed.low, parsed.high
    if low >= high:
        raise ConfigError(
            f"{where}: empty range: low {low:g} must be below high {high:g} "
            "(a fixed value belongs in the base config)"
        )
    if parsed.log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low:g}")
    if tp is float:
        return FloatRange(key, low, high, parsed.log)
    if not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"{where}: {key} is an integer: low and high must be integers")
    return IntRange(key, int(low), int(high), parsed.log)


def parse_space(stage: str, base: RunConfig) -> SearchSpace:
    """The space of `stage`: `base.tune.<stage>`, or the default space when that is empty.

    Every key must exist and be one the stage can change; every range must be non-empty;
    each end of a range and each choice, set alone in `base`, must make a config that
    validates. Raises ConfigError naming the key otherwise."""
    if stage not in TUNE_STAGES:
        raise ValueError(f"stage: expected one of {list(TUNE_STAGES)}, got {stage!r}")
    raw = getattr(base.tune, stage) or default_space(stage, base)
    base_doc = to_dict(base)
    params = []
    for key, spec in raw.items():
        where = f"tune.{stage}.{key}"
        param = _parse_param(stage, key, spec, _check_key(stage, where, key))
        for value in param.probes():
            try:
                load_run_config(None, merge(base_doc, nested({key: value})))
            except ConfigError as e:
                raise ConfigError(f"{where}: the value {value!r} is refused: {e}") from None
        params.append(param)
    return SearchSpace(stage, tuple(params))
