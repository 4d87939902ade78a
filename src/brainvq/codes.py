"""Code maps: every split encoded once by a VQ-VAE bundle, cached in RUN/codes/."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from brainvq.atomic import atomic_path, atomic_write_json
from brainvq.bundle import WEIGHTS_FILE, Bundle
from brainvq.data.sliceset import SPLITS, SliceSet
from brainvq.models.vqvae import VQVAE


@dataclass(frozen=True)
class CodeSet:
    """Code maps of one split.

    codes: (N, h, w) int16 code indices in [0, K); levels: (N,) int16 slice level, -1 unknown.
    """

    codes: np.ndarray
    levels: np.ndarray
    split: str


@torch.inference_mode()
def encode_images(
    model: VQVAE, images: np.ndarray, batch_size: int = 64, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Encode uint8 images (N, H, W) into code maps (N, h, w) int16 (never changes the model)."""
    model = model.to(device).eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size]).to(device).float().div(255)
        out.append(model.encode(x.unsqueeze(1)).cpu().numpy().astype(np.int16))  # (b, h, w)
    if not out:
        h = model.config.image_size // model.config.downsample
        return np.zeros((0, h, h), dtype=np.int16)
    return np.concatenate(out)


@torch.inference_mode()
def decode_codes(
    model: VQVAE,
    codes: np.ndarray | torch.Tensor,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Decode code maps (N, h, w) into uint8 images (N, H, W)."""
    model = model.to(device).eval()
    codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
    out = []
    for start in range(0, len(codes), batch_size):
        x_hat = (
            model.decode_indices(codes[start : start + batch_size].to(device)).float().clamp(0, 1)
        )
        out.append((x_hat[:, 0] * 255).round().to(torch.uint8).cpu().numpy())  # (b, H, W)
    return np.concatenate(out) if out else np.zeros((0, 0, 0), dtype=np.uint8)


def _fingerprint(bundle: Bundle, sliceset: SliceSet) -> str:
    h = hashlib.sha256()
    h.update((bundle.path / WEIGHTS_FILE).read_bytes())
    h.update(sliceset.source.encode())
    h.update(str(sliceset.images.shape).encode())
    h.update(hashlib.sha256(sliceset.images.tobytes()).digest())
    return h.hexdigest()[:16]


def encode_splits(
    bundle: Bundle, sliceset: SliceSet, codes_dir: Path, device: str | torch.device = "cpu"
) -> dict[str, CodeSet]:
    """Encode every split present in `sliceset`, reusing RUN/codes/ when it was made by the
    same bundle from the same slices. Files: `<split>.npz` (codes, levels) + `index.json`."""
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
        result[split] = CodeSet(codes=codes, levels=part.slice_index.astype(np.int16), split=split)
        with atomic_path(codes_dir / f"{split}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, codes=codes, levels=result[split].levels)
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
        return CodeSet(codes=f["codes"], levels=f["levels"], split=split)
