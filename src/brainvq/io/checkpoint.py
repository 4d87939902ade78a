"""Trusted Lightning checkpoints to model bundles.

`checkpoint_to_bundle` turns a Lightning `.ckpt` into a safetensors bundle with
`torch.load(weights_only=True)`: a checkpoint that holds anything but tensors and plain
containers is refused, so even this path never runs code from a file.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from brainvq.atomic import output_folder
from brainvq.config import ConfigError, from_dict
from brainvq.io.bundle import PRIOR_FOLDER, VQVAE_FOLDER, save_bundle

MODEL_PREFIX = "model."


class CheckpointError(ValueError):
    """A Lightning checkpoint is refused, unreadable, or does not describe a brainvq model."""


def _unpickler_reason(error: Exception) -> str:
    """The one line of torch's weights_only error that says what was refused."""
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. Please use|\n\n|$)", str(error), re.S)
    return " ".join(found.group(1).split()) if found else str(error).splitlines()[0]


def load_weights_only(path: str | Path) -> Any:
    """torch.load(path, weights_only=True) on the CPU; never runs code from the file.

    CheckpointError naming the file for anything that is not such a checkpoint: refused
    objects (the unpickler's reason), and whatever else torch.load raises on bytes that are
    not a checkpoint at all (KeyError, EOFError, RuntimeError, ValueError... depending on the
    bytes)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # e.g. about the pickle protocol of bytes it then refuses
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} was refused: torch.load(weights_only=True) cannot read it "
            f"({_unpickler_reason(e)}). Either it is not a PyTorch checkpoint or it holds objects "
            "other than tensors and plain containers, whose unpickling could run code; brainvq "
            "converts only checkpoints made of tensors and plain data (as its trainer writes)"
        ) from None
    except MemoryError:
        raise
    except Exception as e:  # any other failure means these bytes are no checkpoint
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({reason}); expected a Lightning "
            ".ckpt file"
        ) from None


def read_checkpoint(ckpt: str | Path) -> dict:
    """Load a Lightning checkpoint with torch.load(weights_only=True); never runs its code.

    Returns the checkpoint dict, which holds a `state_dict` and a `hyper_parameters` mapping.
    """
    path = Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    doc = load_weights_only(path)
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, got {type(doc).__name__}")
    for key in ("state_dict", "hyper_parameters"):
        if not isinstance(doc.get(key), dict):
            raise CheckpointError(
                f"{path}: expected a Lightning checkpoint with a '{key}' mapping; keys found: "
                f"{sorted(map(str, doc))}"
            )
    return doc


def _checkpoint_model(path: Path, doc: dict) -> tuple[str, Any, nn.Module]:
    """(kind, config, model with the checkpoint's weights) for a checkpoint read from `path`."""
    from brainvq.models.pixelcnn import GatedPixelCNN, PixelCNNConfig
    from brainvq.models.vqvae import VQVAE, VQVAEConfig

    stages = {"vqvae": (VQVAEConfig, VQVAE), "prior": (PixelCNNConfig, GatedPixelCNN)}
    hparams = doc["hyper_parameters"]
    kinds = [kind for kind in stages if kind in hparams]
    if len(kinds) != 1:
        raise CheckpointError(
            f"{path}: hyper_parameters must hold exactly one of {list(stages)} (the model "
            f"config of a VQ-VAE or prior checkpoint); found keys {sorted(map(str, hparams))}"
        )
    kind = kinds[0]
    config_cls, model_cls = stages[kind]
    if not isinstance(hparams[kind], dict):
        raise CheckpointError(f"{path}: hyper_parameters.{kind} must be a mapping")
    try:
        config = from_dict(config_cls, hparams[kind])
    except ConfigError as e:
        raise CheckpointError(f"{path}: hyper_parameters.{kind}.{e}") from None
    state = {
        key.removeprefix(MODEL_PREFIX): value
        for key, value in doc["state_dict"].items()
        if isinstance(key, str) and key.startswith(MODEL_PREFIX)
    }
    if not state:
        raise CheckpointError(f"{path}: state_dict holds no '{MODEL_PREFIX}*' weights")
    not_tensors = sorted(key for key, value in state.items() if not isinstance(value, Tensor))
    if not_tensors:
        raise CheckpointError(f"{path}: state_dict entries are not tensors: {not_tensors[:3]}")
    model = model_cls(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: the weights do not match hyper_parameters.{kind}: {' '.join(str(e).split())}"
        ) from None
    return kind, config, model.eval()


def checkpoint_to_bundle(ckpt: str | Path, out_dir: str | Path) -> Path:
    """Convert a Lightning checkpoint you trust into a model bundle inside `out_dir`.

    The kind comes from the checkpoint's hyper_parameters: `vqvae` -> out_dir/VQVAE_Model,
    `prior` -> out_dir/PixelCNN_Model (an existing bundle there is replaced whole). The config
    is validated and the weights must match it exactly. Returns the bundle folder.
    """
    path = Path(ckpt)
    out = output_folder(out_dir, "--out")
    doc = read_checkpoint(path)
    kind, config, model = _checkpoint_model(path, doc)
    train = doc["hyper_parameters"].get("train")
    meta = {
        "converted_from": path.name,
        "epoch": doc.get("epoch"),
        "global_step": doc.get("global_step"),
        "train_config": train,
    }
    try:
        json.dumps(meta)
    except TypeError as e:
        raise CheckpointError(
            f"{path}: epoch, global_step and hyper_parameters.train must be plain data ({e})"
        ) from None
    folder = VQVAE_FOLDER if kind == "vqvae" else PRIOR_FOLDER
    return save_bundle(out / folder, model, config, kind=kind, meta=meta)
