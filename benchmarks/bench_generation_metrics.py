"""Calibrate the generation metrics on real OASIS slices: do they separate good from bad?

Trains the level classifier on the OASIS train split (PNGs box-downsampled 256 -> 128), splits the
validate subjects in two halves, treats the first as "test" and scores the second half against it,
as is and spoiled in known ways: Gaussian-blurred, two-subject half-and-half chimeras, the mean
training image, uniform noise. Prints one table; skips with a message when the data is absent.

    .venv/bin/python benchmarks/bench_generation_metrics.py [--data DIR] [--epochs N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from brainvq.data.slice_names import OASIS_NAME
from brainvq.evaluation.generation_metrics import (
    extract_features,
    frechet_distance,
    level_accuracy,
    nearest_train_ssim,
    sharpness_ratio,
)
from brainvq.evaluation.level_classifier import train_level_classifier
from brainvq.hardware import machine
from brainvq.models.level_classifier import LevelClassifierConfig

DEFAULT_DATA = Path("/work/shared/oasis/keras_png_slices_data")
SIZE = 128
BLUR_SIGMA = 2.0  # pixels at 128x128
SEED = 0


def load_split(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PNGs of one split -> images (N, 128, 128) uint8, subject (N,) int, level (N,) int."""
    files = sorted(p for p in folder.iterdir() if OASIS_NAME.match(p.name))
    if not files:
        raise FileNotFoundError(f"no case_<subject>_slice_<k>.nii.png files in {folder}")
    images, subjects, levels = [], [], []
    for path in files:
        m = OASIS_NAME.match(path.name)
        x = np.asarray(Image.open(path).convert("L"), dtype=np.float32)  # (256, 256)
        f = x.shape[0] // SIZE
        images.append(x.reshape(SIZE, f, SIZE, f).mean(axis=(1, 3)))  # (128, 128)
        subjects.append(int(m["subject"]))
        levels.append(int(m["slice"]))
    images = np.clip(np.rint(np.stack(images)), 0, 255).astype(np.uint8)
    return images, np.array(subjects), np.array(levels)


def chimeras(
    images: np.ndarray, subjects: np.ndarray, levels: np.ndarray, right_levels: np.ndarray
) -> np.ndarray:
    """Left half of subject s at level k joined to the right half of the next subject's slice at
    right_levels[i]; images (N, S, S) uint8 of 32 levels per subject -> (N, S, S) uint8."""
    ids = np.unique(subjects)
    partner = dict(zip(ids, np.roll(ids, 1), strict=True))
    lookup = {(s, k): i for i, (s, k) in enumerate(zip(subjects, levels, strict=True))}
    out = images.copy()
    for i, s in enumerate(subjects):
        out[i, :, SIZE // 2 :] = images[lookup[(partner[s], right_levels[i])], :, SIZE // 2 :]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=LevelClassifierConfig.epochs)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a busy machine more threads mostly spin and wait)",
    )
    parser.add_argument(
        "--ssim-every", type=int, default=8, help="NN-SSIM on every n-th slice of each set"
    )
    args = parser.parse_args()
    train_dir = args.data / "keras_png_slices_train"
    val_dir = args.data / "keras_png_slices_validate"
    if not (train_dir.is_dir() and val_dir.is_dir()):
        print(
            f"skipped: OASIS slices not found under {args.data} (need {train_dir.name}/ and "
            f"{val_dir.name}/)"
        )
        return 0
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    print(f"# {machine().describe()}; fp32")
    t0 = time.perf_counter()
    train, _, train_levels = load_split(train_dir)
    val, val_subjects, val_levels = load_split(val_dir)
    print(
        f"loaded {len(train)} train, {len(val)} validate slices in {time.perf_counter() - t0:.1f} s"
    )

    ids = np.unique(val_subjects)
    is_test = np.isin(val_subjects, ids[: len(ids) // 2 + len(ids) % 2])
    test, test_levels = val[is_test], val_levels[is_test]
    held, held_levels, held_subjects = val[~is_test], val_levels[~is_test], val_subjects[~is_test]

    config = LevelClassifierConfig(epochs=args.epochs, seed=SEED)
    t0 = time.perf_counter()
    model = train_level_classifier(train, train_levels, config, progress=sys.stdout.isatty())
    train_s = time.perf_counter() - t0
    print(
        f"trained level classifier ({config.epochs} epochs, channels {config.channels}) "
        f"in {train_s:.1f} s on {torch.get_num_threads()} threads"
    )

    rng = np.random.default_rng(SEED)
    blurred = np.stack([gaussian_filter(x.astype(np.float32), BLUR_SIGMA) for x in held])
    mean_image = train.astype(np.float32).mean(axis=0)
    candidates = {
        "real (held-out half of validate)": held,
        f"Gaussian-blurred real (sigma {BLUR_SIGMA:g})": np.rint(blurred).astype(np.uint8),
        "chimeras, two subjects, same level": chimeras(
            held, held_subjects, held_levels, held_levels
        ),
        "chimeras, two subjects, levels 8+ apart": chimeras(
            held, held_subjects, held_levels, (held_levels + rng.integers(8, 25, len(held))) % 32
        ),
        "mean training image": np.repeat(np.rint(mean_image).astype(np.uint8)[None], len(held), 0),
        "uniform noise": rng.integers(0, 256, size=held.shape, dtype=np.uint8),
    }
    t0 = time.perf_counter()
    test_feats = extract_features(model, test)
    header = f"{'set (vs test half of validate)':<42} {'FD':>8} {'level acc':>9} "
    header += f"{'sharpness':>9} {'NN-SSIM':>8}"
    print(f"\n{len(test)} test slices, {len(held)} slices per set\n{header}\n{'-' * len(header)}")
    for name, images in candidates.items():
        fd = frechet_distance(extract_features(model, images), test_feats)
        acc = level_accuracy(model, images, held_levels)
        sharp = sharpness_ratio(images, test)
        memo = nearest_train_ssim(images[:: args.ssim_every], train).mean()
        print(f"{name:<42} {fd:8.1f} {acc:9.3f} {sharp:9.3f} {memo:8.3f}")
    print(f"\nlevel accuracy of the test half: {level_accuracy(model, test, test_levels):.3f}")
    print(f"metrics took {time.perf_counter() - t0:.1f} s")
    print("FD: Frechet distance in level-classifier features; level acc: share within 2 levels;")
    print("sharpness: high-frequency share vs test; NN-SSIM: mean SSIM to the nearest train slice")
    print(f"(NN-SSIM on every {args.ssim_every}th slice of each set)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
