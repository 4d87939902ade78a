"""Code maps: batched encoding and decoding with a VQ-VAE, and every split of a run's data
encoded once and cached in RUN/codes/: `<split>.npy` (N, h, w) int16, `<split>.level.npy`
(N,) int16 and `<split>.subject.npy` (N,) str (which slices make a subject, for a prior of
whole subjects), plus `index.json` naming the bundle and the slices they came from, written
last.

The split's slices are read a batch at a time and their codes written into the memory-mapped
`.npy` as they come, so encoding a store of any size needs the memory of one batch; each file
is renamed into place when complete, and a folder whose index.json does not match is encoded
again. `load_codes` maps the files (read only where used).

`write_codes_file` is the same streaming for `brainvq encode`: the code maps of any number of
slices go into one compressed `.npz` (codes, names, levels, dims) a batch at a time, each array
written into its zip member (`npz_member`) as it is made.

A 3D VQ-VAE codes whole subjects (brainvq.data.subject_volumes): `encode_images` and
`decode_codes` take and give volumes (S, D, H, W) <-> code volumes (S, D', h, w), one volume
at a time; a run's split is stored as the latent levels of its code volumes, each a map
(h, w) with its subject and latent level (its first slice's level // level_downsample + k),
so the prior of whole subjects (`neighbour: previous`) learns each latent level given the one
below as it learns a slice given the slice below, and needs nothing of its own for 3D."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from brainvq.atomic import atomic_path, atomic_write_json
from brainvq.data.sliceset import SPLITS, SliceSet
from brainvq.data.store import RowReader
from brainvq.data.subject_volumes import subject_volumes
from brainvq.io.bundle import WEIGHTS_FILE, Bundle
from brainvq.models.eval_mode import eval_mode
from brainvq.models.vqvae import VQVAE

BATCH = 64
CODES_FORMAT = 3  # 3: memory-mapped .npy per split; part of the cache fingerprint
COUNT_CHUNK = 4096  # code maps per step when counting codes
HASH_CHUNK = 4096  # slices per step when hashing a SliceSet or writing a column


@dataclass(frozen=True)
class CodeSet:
    """Code maps of one split.

    codes: (N, h, w) int16 code indices in [0, K); level: (N,) int16 slice level, -1 unknown;
    subject: (N,) str subject (or volume) ids, or None where not known (code maps made before
    subjects were stored, or of slices without them).
    """

    codes: np.ndarray
    level: np.ndarray
    split: str
    subject: np.ndarray | None = None


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, start + batch_size)


def _images_in(images: np.ndarray, part: slice, device: torch.device | str) -> torch.Tensor:
    """uint8 (N, H, W) -> the batch (b, 1, H, W) float in [0, 1] on `device` (a copy: the
    images may be a read-only memory map)."""
    return torch.from_numpy(np.array(images[part])).to(device).float().div(255).unsqueeze(1)


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


def _check_volumes(array: np.ndarray | torch.Tensor, what: str) -> None:
    """ValueError unless `array` is a batch (S, D, H, W) for a 3D model (what: "volumes" or
    "code volumes")."""
    if array.ndim != 4:
        raise ValueError(
            f"a 3D VQ-VAE takes {what} (S, D, H, W), one per subject; "
            f"got shape {tuple(array.shape)}"
        )


def _volumes_in(volume: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """uint8 (D, H, W) -> (1, 1, D, H, W) float in [0, 1] on `device`."""
    return torch.from_numpy(np.array(volume)).to(device).float().div(255)[None, None]


def encode_images(
    model: VQVAE, images: np.ndarray, batch_size: int = BATCH, device: str = "cpu"
) -> np.ndarray:
    """uint8 images (N, H, W) -> code maps (N, h, w) int16. Never changes the model.
    A 3D model: uint8 volumes (S, D, H, W) -> code volumes (S, D', h, w) int16."""
    if model.config.dims == 3:
        _check_volumes(images, "volumes")
        with eval_mode(model.to(device)), torch.inference_mode():
            codes = [model.encode(_volumes_in(v, device))[0].cpu().numpy() for v in images]
        if not codes:
            side, depth = model.config.latent_size, images.shape[1] // model.config.level_downsample
            return np.zeros((0, depth, side, side), dtype=np.int16)
        return np.stack(codes).astype(np.int16)
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
    """Code maps (N, h, w) -> uint8 images (N, H, W). A 3D model: code volumes
    (S, D', h, w) -> uint8 volumes (S, D, H, W)."""
    codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
    if model.config.dims == 3:
        _check_volumes(codes, "code volumes")
        with eval_mode(model.to(device)), torch.inference_mode():
            volumes = [
                to_uint8(_images_out(model.decode_indices(c[None].to(device)))[0]) for c in codes
            ]
        if not volumes:
            side, depth = model.config.image_size, codes.shape[1] * model.config.level_downsample
            return np.zeros((0, depth, side, side), dtype=np.uint8)
        return np.stack(volumes)
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
    """The weights, and the slices: their store's key when they have one, else their bytes
    (hashed a chunk at a time)."""
    h = hashlib.sha256()
    h.update(f"codes format {CODES_FORMAT}".encode())
    h.update((bundle.path / WEIGHTS_FILE).read_bytes())
    h.update(sliceset.source.encode())
    h.update(str(sliceset.images.shape).encode())
    if sliceset.content_key:
        h.update(f"store {sliceset.content_key}".encode())
    else:
        for start in range(0, len(sliceset), HASH_CHUNK):
            h.update(np.ascontiguousarray(sliceset.images[start : start + HASH_CHUNK]).data)
        h.update(np.asarray(sliceset.level, dtype=np.int16).tobytes())
    return h.hexdigest()[:16]


def _paths(codes_dir: Path, split: str) -> tuple[Path, Path, Path]:
    return (
        codes_dir / f"{split}.npy",
        codes_dir / f"{split}.level.npy",
        codes_dir / f"{split}.subject.npy",
    )


def has_codes(codes_dir: Path, split: str) -> bool:
    """Whether RUN/codes holds the code maps of `split` (with their levels and subjects)."""
    return all(p.is_file() for p in _paths(Path(codes_dir), split))


def encode_split(
    model: VQVAE,
    sliceset: SliceSet,
    split: str,
    codes_dir: Path,
    device: str = "cpu",
    batch_size: int = BATCH,
) -> None:
    """Encode the slices of `split` a batch at a time into codes_dir/<split>.npy (and their
    levels into <split>.level.npy), each renamed into place when complete. A 3D model encodes
    the split's subjects a volume at a time (`_encode_volume_split`)."""
    if model.config.dims == 3:
        _encode_volume_split(model, sliceset, split, codes_dir, device)
        return
    rows = np.flatnonzero(sliceset.split == split)
    h = model.config.image_size // model.config.downsample
    codes_path, level_path, subject_path = _paths(codes_dir, split)
    reader = RowReader(sliceset.images)
    with atomic_path(codes_path) as tmp:
        codes = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16, shape=(len(rows), h, h))
        with eval_mode(model.to(device)), torch.inference_mode():
            for part in _batches(len(rows), batch_size):
                x = torch.from_numpy(reader.read(rows[part])).to(device)  # (b, H, W) uint8
                x = x.float().div(255).unsqueeze(1)  # (b, 1, H, W)
                codes[part] = model.encode(x).cpu().numpy().astype(np.int16)  # (b, h, w)
        codes.flush()
        del codes
    with atomic_path(level_path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(sliceset.level[rows], dtype=np.int16))
    with atomic_path(subject_path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(sliceset.subject[rows]).astype(str))


def _encode_volume_split(
    model: VQVAE, sliceset: SliceSet, split: str, codes_dir: Path, device: str
) -> None:
    """encode_split for a 3D model: the latent levels of each subject's code volume, subject by
    subject, with their latent levels and subjects (see the module docstring)."""
    config = model.config
    volumes = subject_volumes(sliceset, split, config.level_downsample)
    d, h = config.latent_depth(volumes.depth), config.latent_size
    codes_path, level_path, subject_path = _paths(codes_dir, split)
    reader = RowReader(sliceset.images)
    with atomic_path(codes_path) as tmp:
        codes = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.int16, shape=(len(volumes) * d, h, h)
        )
        with eval_mode(model.to(device)), torch.inference_mode():
            for i, rows in enumerate(volumes.rows):
                x = _volumes_in(reader.read(rows), device)  # (1, 1, D, H, W)
                codes[i * d : (i + 1) * d] = model.encode(x)[0].cpu().numpy()  # (d, h, w)
        codes.flush()
        del codes
    first = volumes.first_level // config.level_downsample  # (S,)
    level = (first[:, None] + np.arange(d)[None, :]).ravel()  # (S*d,)
    with atomic_path(level_path) as tmp, open(tmp, "wb") as f:
        np.save(f, level.astype(np.int16))
    with atomic_path(subject_path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.repeat(volumes.subject, d).astype(str))


def encode_splits(
    bundle: Bundle, sliceset: SliceSet, codes_dir: Path, device: str = "cpu"
) -> dict[str, CodeSet]:
    """Encode every split present in `sliceset`, reusing `codes_dir` when it was made by the
    same bundle (its weights) from the same slices. Returns each split's CodeSet, memory-mapped
    from `<split>.npy` and `<split>.level.npy`; `index.json` is written last."""
    codes_dir = Path(codes_dir)
    fingerprint = _fingerprint(bundle, sliceset)
    index_path = codes_dir / "index.json"
    present = [s for s in SPLITS if (sliceset.split == s).any()]
    if index_path.is_file():
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("fingerprint") == fingerprint and all(
            has_codes(codes_dir, s) for s in present
        ):
            return {s: load_codes(codes_dir, s) for s in present}
        index_path.unlink()  # no longer describes what is (about to be) there
    for split in present:
        encode_split(bundle.model, sliceset, split, codes_dir, device)
    atomic_write_json(
        index_path, {"fingerprint": fingerprint, "splits": present, "bundle": str(bundle.path)}
    )
    return {s: load_codes(codes_dir, s) for s in present}


def npz_member(
    archive: zipfile.ZipFile, name: str, shape: tuple[int, ...], dtype: np.dtype, parts: Iterable
) -> None:
    """Write `name`.npy into `archive` from `parts`, C-order chunks of an array of `shape` and
    `dtype` (together exactly that array), without holding it whole."""
    with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
        np.lib.format.write_array_header_2_0(f, {**header, "shape": shape})
        for part in parts:
            f.write(np.ascontiguousarray(part, dtype=dtype).tobytes())


def write_codes_file(
    path: Path,
    model: VQVAE,
    images: np.ndarray,
    names: np.ndarray,
    levels: np.ndarray,
    device: str = "cpu",
    batch_size: int = BATCH,
) -> Path:
    """`path` (.npz, compressed, atomic): codes (N, h, w) int16 of uint8 images (N, H, W), read
    a batch at a time (they may be a memory map), names (N,) str and levels (N,) int64 of the
    slices, and dims () 2 (a 3D model's code volumes: brainvq.inference.level_stacks); what
    np.savez_compressed would write, made without holding the code maps."""
    n, h = len(images), model.config.latent_size
    names = np.asarray(names)  # a store's column stays mapped: written a chunk at a time
    if names.dtype.kind != "U":
        names = names.astype(str)
    reader = RowReader(images)

    def encoded() -> Iterator[np.ndarray]:
        with eval_mode(model.to(device)), torch.inference_mode():
            for part in _batches(n, batch_size):
                x = reader.read(np.arange(part.start, min(part.stop, n)))  # (b, H, W) uint8
                x = torch.from_numpy(x).to(device).float().div(255).unsqueeze(1)  # (b, 1, H, W)
                yield model.encode(x).cpu().numpy().astype(np.int16)  # (b, h, w)

    def chunks(column: np.ndarray) -> Iterator[np.ndarray]:
        return (column[start : start + HASH_CHUNK] for start in range(0, n, HASH_CHUNK))

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        npz_member(archive, "codes", (n, h, h), np.dtype(np.int16), encoded())
        npz_member(archive, "names", (n,), names.dtype, chunks(names))
        npz_member(archive, "levels", (n,), np.dtype(np.int64), chunks(np.asarray(levels)))
        npz_member(archive, "dims", (), np.dtype(np.int64), [np.int64(2)])
    return path


def load_codes(codes_dir: Path, split: str) -> CodeSet:
    """The code maps of `split` in RUN/codes, memory-mapped (read-only); subject None when the
    folder predates stored subjects."""
    codes_path, level_path, subject_path = _paths(Path(codes_dir), split)
    if not (codes_path.is_file() and level_path.is_file()):
        raise FileNotFoundError(
            f"no code maps for split {split!r} at {codes_path}; run `brainvq train prior` first"
        )
    subject = np.load(subject_path, allow_pickle=False) if subject_path.is_file() else None
    return CodeSet(
        codes=np.load(codes_path, mmap_mode="r", allow_pickle=False),
        level=np.load(level_path, mmap_mode="r", allow_pickle=False),
        split=split,
        subject=subject,
    )


def code_counts(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """How often each code occurs in `codes` (N, h, w): (codebook_size,) int64, counted
    COUNT_CHUNK maps at a time (a memory map is never read whole)."""
    counts = np.zeros(codebook_size, dtype=np.int64)
    for start in range(0, len(codes), COUNT_CHUNK):
        chunk = np.asarray(codes[start : start + COUNT_CHUNK], dtype=np.int64).ravel()
        counts += np.bincount(chunk, minlength=codebook_size)[:codebook_size]
    return counts
