"""A stack of consecutive frame levels through a 3D VQ-VAE, whatever its depth and first level.

A 3D VQ-VAE codes `level_downsample` = s slice levels a latent level, and a run's volumes start
at frame level 0, so latent level j of the run (the latent levels of RUN/codes, and of the
prior) holds frame levels s*j to s*j + s - 1. A scan covers the levels its field of view
reaches, a to b, any number of them. Its stack is therefore

1. padded to whole latent levels of the run's frame: from s*floor(a/s) to s*ceil((b+1)/s) - 1,
   its bottom slice repeated below and its top slice above (a border pad: at most s - 1 levels
   each side, which a reconstruction's later crop throws away);
2. coded whole: encode, then decode;
3. cropped back to a..b, so every covered level gets its own answer and no other level does.

The codes keep the padded latent levels: they are what was coded, first_latent = floor(a/s)
names the first one on the run's frame, and decoding them gives the padded stack. Refusing a
depth not divisible by s instead would refuse most scans (their coverage is their field of
view, not a choice), which is why padding is the way for scans; a folder of slices that claims
whole subjects is checked, not padded (brainvq.data.subject_volumes.subject_stacks).

A 3D model's codes file (`brainvq encode`: `write_code_volumes`) is the 2D one's format
(brainvq.inference.codes.write_codes_file) with latent levels for rows: codes (N', h, w) int16,
the latent levels of every code volume, volume by volume in level order; names (N',) the volume
each belongs to (a subject, a scan); levels (N',) int64 its latent level on the run's frame;
dims () 3; level_stride () s. A volume's code volume is codes[names == name], which
brainvq.decode takes as one (1, D', h, w).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainvq.atomic import atomic_path
from brainvq.inference.codes import decode_codes, encode_images, npz_member
from brainvq.models.vqvae import VQVAE


@dataclass(frozen=True)
class PaddedStack:
    """volume (D, H, W) uint8, D a multiple of the level stride s; before: the levels padded
    below the stack (volume[before : before + depth] is the stack); depth: the stack's own
    levels; first_latent: the run's latent level of the volume's first latent level."""

    volume: np.ndarray
    before: int
    depth: int
    first_latent: int

    def crop(self, padded: np.ndarray) -> np.ndarray:
        """(D, ...) values of the padded volume -> (depth, ...) those of the stack."""
        return padded[self.before : self.before + self.depth]


def pad_stack(images: np.ndarray, first_level: int, stride: int) -> PaddedStack:
    """uint8 images (L, H, W), frame levels first_level .. first_level + L - 1 -> the stack
    padded to whole latent levels of stride `stride` on the frame (steps 1 of the module
    docstring). ValueError for an empty stack or a negative first level."""
    if len(images) == 0 or first_level < 0:
        raise ValueError(
            f"a stack of levels needs at least one slice at a frame level >= 0; got "
            f"{len(images)} slices from level {first_level}"
        )
    start = first_level // stride * stride
    stop = -(-(first_level + len(images)) // stride) * stride  # ceil to a multiple of stride
    before, after = first_level - start, stop - first_level - len(images)
    volume = np.concatenate(
        [np.repeat(images[:1], before, axis=0), images, np.repeat(images[-1:], after, axis=0)]
    )  # (D, H, W)
    return PaddedStack(volume, before, len(images), start // stride)


def encode_stack(model: VQVAE, images: np.ndarray, first_level: int) -> tuple[np.ndarray, int]:
    """uint8 images (L, H, W) of consecutive frame levels from first_level -> (codes (D', h, w)
    int16 of the padded stack, the run's latent level of its first latent level)."""
    stack = pad_stack(images, first_level, model.config.level_stride)
    return encode_images(model, stack.volume[None])[0], stack.first_latent


def reconstruct_stack(
    model: VQVAE, images: np.ndarray, first_level: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """uint8 images (L, H, W) of consecutive frame levels from first_level -> (reconstruction
    (L, H, W) uint8, codes (D', h, w) int16 of the padded stack, its first latent level on the
    run's frame): decode(encode(padded stack)), cropped back to the L levels."""
    stack = pad_stack(images, first_level, model.config.level_stride)
    codes = encode_images(model, stack.volume[None])  # (1, D', h, w)
    return stack.crop(decode_codes(model, codes)[0]), codes[0], stack.first_latent


def code_cells(model: VQVAE, codes: np.ndarray, first_level: int, depth: int) -> np.ndarray:
    """Codes (D', h, w) of a padded stack (`encode_stack` of `depth` levels from first_level)
    -> (depth, H, W): the code index of the latent cell holding each voxel of the stack."""
    f, s = model.config.downsample, model.config.level_stride
    cells = np.repeat(np.repeat(np.repeat(codes, s, axis=0), f, axis=1), f, axis=2)  # (D, H, W)
    before = first_level - first_level // s * s
    return cells[before : before + depth]


@dataclass(frozen=True)
class CodeVolume:
    """Where one code volume goes in a codes file: its name (a subject, a scan), the run's
    latent level of its first latent level, and its number of latent levels."""

    name: str
    first_latent: int
    depth: int


def write_code_volumes(
    path: Path,
    volumes: list[CodeVolume],
    codes: Iterable[np.ndarray],
    level_stride: int,
    latent_size: int,
) -> Path:
    """`path` (.npz, compressed, atomic; the format of the module docstring). codes: each of
    `volumes`' code volumes (depth, latent_size, latent_size) int16 in turn, written as made
    (a generator that encodes them holds one at a time)."""
    n, h = sum(v.depth for v in volumes), latent_size
    names = np.array([v.name for v in volumes for _ in range(v.depth)], dtype=str)  # (N',)
    levels = np.array(
        [v.first_latent + k for v in volumes for k in range(v.depth)], dtype=np.int64
    )  # (N',)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        npz_member(archive, "codes", (n, h, h), np.dtype(np.int16), codes)
        npz_member(archive, "names", (n,), names.dtype, [names])
        npz_member(archive, "levels", (n,), np.dtype(np.int64), [levels])
        npz_member(archive, "dims", (), np.dtype(np.int64), [np.int64(3)])
        npz_member(archive, "level_stride", (), np.dtype(np.int64), [np.int64(level_stride)])
    return path
