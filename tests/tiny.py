"""Paths for the tests that train tiny runs (pytest puts tests/ on sys.path)."""

import sys
from pathlib import Path

TESTS = Path(__file__).parent
TINY_CONFIG = TESTS / "configs" / "tiny.yaml"


def train_cmd(run: Path, *flags: str) -> list[str]:
    """The command line of `brainvq train vqvae` on the tiny demo config, for a subprocess."""
    return [
        sys.executable,
        "-m",
        "brainvq.cli",
        "train",
        "vqvae",
        "--data",
        "demo",
        "--config",
        str(TINY_CONFIG),
        "--out",
        str(run),
        "--accelerator",
        "cpu",
        *flags,
    ]


# The keys metrics.json documents under `vqvae` and `prior`.
VQVAE_KEYS = (
    "split",
    "n_images",
    "ssim",
    "ssim_min",
    "psnr",
    "mae",
    "mse",
    "perplexity",
    "codes_used",
    "codebook_size",
    "bits_per_pixel",
)
PRIOR_KEYS = (
    "nll_bits_per_code_val",
    "nll_bits_per_code_test",
    "fd",
    "fd_ceiling",
    "fd_floor",
    "level_accuracy",
    "sharpness_ratio",
    "memorisation_ssim_mean",
    "memorisation_ssim_real_mean",
)
