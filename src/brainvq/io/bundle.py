"""Model bundles: a folder with `config.json` and `model.safetensors`, nothing else.

No pickle anywhere: loading a bundle someone sent you cannot run their code. The JSON config
is validated (known keys, types, ranges) before any module is built, and the weights must
match the rebuilt model exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from brainvq.config import ConfigError, from_dict, to_dict
from brainvq.run import BUNDLE_FOLDERS, PRIOR_FOLDER, VQVAE_FOLDER, RunLayout

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# 2: the prior's codebook size is `codebook_size`, as in the VQ-VAE (1 called it `num_codes`),
# and priors may share their level maps (level_map_rank; version 1 had one map per level)
FORMAT_VERSION = 2
RENAMED_IN_2 = {"prior": {"num_codes": "codebook_size"}}
DEFAULTS_BEFORE_2 = {"prior": {"level_map_rank": 0}}
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".pkl", ".bin")


class BundleError(ValueError):
    """A model bundle is missing, malformed or does not match its config."""


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: the rebuilt model (eval mode, on the CPU), its config and metadata."""

    model: torch.nn.Module
    config: Any
    meta: dict[str, Any]
    path: Path


def save_bundle(
    folder: str | Path, model: torch.nn.Module, config: Any, kind: str, meta: dict | None = None
) -> Path:
    """Write `model`'s weights and `config` to `folder` atomically (swapped in whole)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"cannot write the model bundle to {folder}: it is a file")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a bundle is meant to be shared
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        try:
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "kind": kind})
        except SafetensorError as e:  # a full disk surfaces as this, not as an OSError
            raise OSError(f"cannot write the model bundle {folder}: {e}") from None
        doc = {
            "kind": kind,
            "format_version": FORMAT_VERSION,
            "config": to_dict(config),
            "meta": meta or {},
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def resolve_bundle(path: str | Path, folder_name: str) -> Path:
    """The bundle folder for `path`: the folder itself, or `folder_name` inside a run directory."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES and not path.is_dir():
        raise BundleError(
            f"{path} is a pickle-based checkpoint, not a model bundle; brainvq loads only "
            f"safetensors + JSON bundles. Convert it with `brainvq export --from-ckpt {path} "
            f"--out DIR` (only for checkpoints you trust)"
        )
    if not path.exists():
        raise FileNotFoundError(f"model bundle not found: {path}")
    if not path.is_dir():
        raise BundleError(
            f"{path} is a file; expected a model folder holding {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    if (path / CONFIG_FILE).exists() or (path / WEIGHTS_FILE).exists():
        return path
    stage = next(stage for stage, folder in BUNDLE_FOLDERS.items() if folder == folder_name)
    for candidate in (path / folder_name, RunLayout(path).bundle(stage)):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"no model bundle in {path}: expected {CONFIG_FILE} and {WEIGHTS_FILE} there, or a "
        f"{folder_name}/ folder inside it"
    )


def read_bundle_config(folder: Path, kind: str, config_cls: type) -> tuple[Any, dict]:
    """Parse and validate `folder/config.json` for a bundle of `kind`."""
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"model bundle {folder} has no {CONFIG_FILE}")
    try:
        doc = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{cfg_path} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise BundleError(f"{cfg_path}: expected an object with a 'config' mapping")
    if doc.get("kind") != kind:
        raise BundleError(
            f"{cfg_path}: this bundle holds a {doc.get('kind')!r} model, expected {kind!r}"
        )
    version = doc.get("format_version")
    if version not in (1, FORMAT_VERSION):
        raise BundleError(f"{cfg_path}: format_version {version!r}, expected 1 or {FORMAT_VERSION}")
    config_doc = dict(doc["config"])
    if version == 1:  # the same models, some keys named differently
        for old, new in RENAMED_IN_2.get(kind, {}).items():
            if old in config_doc:
                config_doc[new] = config_doc.pop(old)
        config_doc = {**DEFAULTS_BEFORE_2.get(kind, {}), **config_doc}
    try:
        config = from_dict(config_cls, config_doc, prefix="config.")
    except ConfigError as e:
        raise BundleError(f"{cfg_path}: {e}") from None
    meta = doc.get("meta") or {}
    if not isinstance(meta, dict):
        raise BundleError(f"{cfg_path}: 'meta' must be a mapping")
    return config, meta


def load_weights(folder: Path, model: torch.nn.Module) -> None:
    """Load `folder/model.safetensors` into `model`, refusing any mismatch."""
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"model bundle {folder} has no {WEIGHTS_FILE}")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise BundleError(f"{weights} is not a valid safetensors file ({e})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            parts.append(f"shape mismatch {wrong[:3]}")
        raise BundleError(f"{weights} does not match {folder / CONFIG_FILE}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def _load(folder: Path, kind: str, config_cls: type, model_cls: type) -> Bundle:
    config, meta = read_bundle_config(folder, kind, config_cls)
    model = model_cls(config)
    load_weights(folder, model)
    return Bundle(model=model.eval(), config=config, meta=meta, path=folder)


def load_vqvae(path: str | Path) -> Bundle:
    """Rebuild a VQ-VAE from a `VQVAE_Model` folder (or a run directory holding one)."""
    from brainvq.models.vqvae import VQVAE, VQVAEConfig

    return _load(resolve_bundle(path, VQVAE_FOLDER), "vqvae", VQVAEConfig, VQVAE)


def load_prior(path: str | Path) -> Bundle:
    """Rebuild a PixelCNN prior from a `PixelCNN_Model` folder (or a run directory holding one)."""
    from brainvq.models.pixelcnn import GatedPixelCNN, PixelCNNConfig

    return _load(resolve_bundle(path, PRIOR_FOLDER), "prior", PixelCNNConfig, GatedPixelCNN)


def load_level_classifier(path: str | Path) -> Bundle:
    """Rebuild a run's level classifier from its bundle folder (RUN/evaluation/LevelClassifier)."""
    from brainvq.models.level_classifier import LevelClassifier, LevelClassifierConfig

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no level classifier at {folder}: it is trained by the prior's evaluation "
            "(`brainvq train prior`)"
        )
    return _load(folder, "level_classifier", LevelClassifierConfig, LevelClassifier)
