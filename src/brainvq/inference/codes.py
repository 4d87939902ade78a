"""Code maps: batched encoding and decoding with a VQ-VAE, and every split of a run's data
encoded once and cached in RUN/codes/ (`<split>.npz` with `codes` and `level`, plus
`index.json` naming the bundle and the slices they came from)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from brainvq.data.sliceset import SPLITS, SliceSet
from brainvq.io.atomic import atomic_path, atomic_write_json
from brainvq.io.bundle import WEIGHTS_FILE, Bundle
from brainvq.models.eval_mode import eval_mode
from brainvq.models.vqvae import VQVAE

BATCH = 64
CODES_FORMAT = 2  # 2: the level array is named "level"; part of the cache fingerprint


@dataclass(frozen=True)
class CodeSet:
    """Code maps of one split.

    codes: (N, h, w) int16 code indices in [0, K); level: (N,) int16 slice level, -1 unknown.
    """

    codes: np.ndarray
    level: np.ndarray
    split: str


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, start + batch_size)


def _images_in(images: np.ndarray, part: slice, device: torch.device | str) -> torch.Tensor:
    """uint8 (N, H, W) -> the batch (b, 1, H, W) float in [0, 1] on `device`."""
    return torch.from_numpy(images[part]).to(device).float().div(255).unsqueeze(1)


def _images_out(x_hat: torch.Tensor) -> np.ndarray:
    """(b, 1, H, W) float, about [0, 1] -> (b, H, W) float32 clamped to [0, 1]."""
    return x_hat.float().clamp(0, 1)[:, 0].cpu().numpy()


def to_uint8(images: np.ndarray) -> np.ndarray:
    """(N, H, W) float in [0, 1] -> (N, H, W) uint8 (rounded)."""
    return (np.asarray(images) * 255).round().astype(np.uint8)


def _run(
    model: VQVAE,
    n: int,
    step: Callable[[slice], tuple[np.ndarray, ...]],
    batch_size: int,
    device: torch.device | str,
) -> list[np.ndarray]:
    """Apply `step` to each batch of n items with `model` in eval mode (for the call) on
    `device`, in inference mode, and concatenate each of its outputs over the batches."""
    with eval_mode(model.to(device)), torch.inference_mode():
        parts = [step(part) for part in _batches(n, batch_size)]
    return [np.concatenate(column) for column in zip(*parts, strict=True)] if parts else []


def encode_images(
    model: VQVAE, images: np.ndarray, batch_size: int = BATCH, device: str = "cpu"
) -> np.ndarray:
    """uint8 images (N, H, W) -> code maps (N, h, w) int16. Never changes the model."""
    if len(images) == 0:
        h = model.config.image_size // model.config.downsample
        return np.zeros((0, h, h), dtype=np.int16)

    def step(part: slice) -> tuple[np.ndarray]:
        codes = model.encode(_images_in(images, part, device))  # (b, h, w)
        return (codes.cpu().numpy().astype(np.int16),)

    return _run(model, len(images), step, batch_size, device)[0]


def decode_codes(
    model: VQVAE, codes: np.ndarray | torch.Tensor, batch_size: int = BATCH, device: str = "cpu"
) -> np.ndarray:
    """Code maps (N, h, w) -> uint8 images (N, H, W)."""
    codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
    if len(codes) == 0:
        side = model.config.image_size
        return np.zeros((0, side, side), dtype=np.uint8)

    def step(part: slice) -> tuple[np.ndarray]:
        return (to_uint8(_images_out(model.decode_indices(codes[part].to(device)))),)

    return _run(model, len(codes), step, batch_size, device)[0]


def reconstruct(
    model: VQVAE, images: np.ndarray, batch_size: int = BATCH, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W) -> (reconstructions (N, H, W) float32 in [0, 1], code maps
    (N, h, w) int64), through the code: decode(encode(x)). Never changes the model."""

    def step(part: slice) -> tuple[np.ndarray, np.ndarray]:
        codes = model.encode(_images_in(images, part, device))  # (b, h, w)
        return _images_out(model.decode_indices(codes)), codes.cpu().numpy()

    out = _run(model, len(images), step, batch_size, device)
    if not out:
        side, h = model.config.image_size, model.config.latent_size
        return np.zeros((0, side, side), np.float32), np.zeros((0, h, h), np.int64)
    return out[0], out[1]


def _fingerprint(bundle: Bundle, sliceset: SliceSet) -> str:
    h = hashlib.sha256()
    h.update(f"codes format {CODES_FORMAT}".encode())
    h.update((bundle.path / WEIGHTS_FILE).read_bytes())
    h.update(sliceset.source.encode())
    h.update(str(sliceset.images.shape).encode())
    h.update(hashlib.sha256(sliceset.images.tobytes()).digest())
    h.update(sliceset.level.astype(np.int16).tobytes())
    return h.hexdigest()[:16]


def encode_splits(
    bundle: Bundle, sliceset: SliceSet, codes_dir: Path, device: str = "cpu"
) -> dict[str, CodeSet]:
    """Encode every split present in `sliceset`, reusing `codes_dir` when it was made by the
    same bundle (its weights) from the same slices. Files: `<split>.npz` + `index.json`."""
    codes_dir = Path(codes_dir)
    fingerprint = _fingerprint(bundle, sliceset)
    index_path = codes_dir / "index.json"
    present = [s for s in SPLITS if (sliceset.split == s).any()]
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("fingerprint") == fingerprint and all(
            (codes_dir / f"{s}.npz").is_file() for s in present
        ):
            return {s: load_codes(codes_dir, s) for s in present}
    result = {}
    for split in present:
        part = sliceset.subset(sliceset.split == split)
        codes = encode_images(bundle.model, part.images, device=device)
        result[split] = CodeSet(codes=codes, level=part.level.astype(np.int16), split=split)
        with atomic_path(codes_dir / f"{split}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, codes=codes, level=result[split].level)
    atomic_write_json(
        index_path, {"fingerprint": fingerprint, "splits": present, "bundle": str(bundle.path)}
    )
    return result


def load_codes(codes_dir: Path, split: str) -> CodeSet:
    path = Path(codes_dir) / f"{split}.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"no code maps for split {split!r} at {path}; run `brainvq train prior` first"
        )
    with np.load(path, allow_pickle=False) as f:
        return CodeSet(codes=f["codes"], level=f["level"], split=split)
