"""Paths for the tests that train tiny runs (pytest puts tests/ on sys.path)."""

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent
TINY_CONFIG = TESTS / "configs" / "tiny.yaml"
TINY_3D = TESTS / "configs" / "tiny_3d.yaml"  # 16 levels of 32x32, level_downsample 2


def run_text(cmd: list[str]) -> subprocess.CompletedProcess:
    """`cmd` in a process of its own: its exit code, stdout and stderr as text, decoded as
    UTF-8 whatever the locale (CI's is ASCII; brainvq's tables are not)."""
    return subprocess.run(
        cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600
    )


def run_ok(cmd: list[str]) -> None:
    """run_text(cmd), asserting that it exits 0 (the end of its stderr otherwise)."""
    done = run_text(cmd)
    assert done.returncode == 0, done.stderr[-3000:]


def brainvq_cli(*args: str | Path | int) -> subprocess.CompletedProcess:
    """`brainvq ARGS` in a process of its own: its exit code, stdout and stderr as text."""
    return run_text([sys.executable, "-m", "brainvq.app.cli", *map(str, args)])


def train_cmd(run: Path, *flags: str, config: Path = TINY_CONFIG) -> list[str]:
    """The command line of `brainvq train vqvae` on the demo cohort with `config` (default the
    tiny config), for a subprocess."""
    return [
        sys.executable,
        "-m",
        "brainvq.app.cli",
        "train",
        "vqvae",
        "--data",
        "demo",
        "--config",
        str(config),
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


def assert_codes_agree(got, model, x, rel_margin: float = 1e-4) -> None:
    """`got` (B, h, w) code indices (a 3D model: (B, d, h, w)) from another runtime (ONNX,
    another layout) must equal model.encode(x) wherever the nearest code is clearly nearest.

    Two kernels that round differently can only swap codes that tie: where the two smallest
    squared distances of an encoder output differ by less than rel_margin of their size.
    Anywhere else a difference is a real bug."""
    import numpy as np
    import torch

    expected = model.encode(x).numpy()
    got = np.asarray(got)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    with torch.no_grad():
        z = model.eval().encoder(x).movedim(1, -1).double()  # (B, [d,] h, w, D)
        codebook = model.quantizer.embedding.double()  # (K, D)
        dist = ((z[..., None, :] - codebook) ** 2).sum(-1)  # (B, [d,] h, w, K)
        two = dist.topk(2, dim=-1, largest=False).values  # (B, [d,] h, w, 2)
        tie = ((two[..., 1] - two[..., 0]) <= rel_margin * two[..., 1].clamp_min(1e-12)).numpy()
    differ = got != expected
    assert not (differ & ~tie).any(), (
        f"{int((differ & ~tie).sum())} codes differ where the nearest code is clear"
    )


def small_3d_vqvae_config():
    """A small 3D VQ-VAE config at 32x32 (level stride 2, downsample 4), for tests that build
    the model directly."""
    from brainvq.models.vqvae import VQVAEConfig

    return VQVAEConfig(
        image_size=32,
        dims=3,
        downsample=4,
        level_downsample=2,
        channels=(8, 16),
        res_blocks=1,
        res_channels=8,
        code_dim=8,
        codebook_size=16,
    )


def train_tiny_3d(folder: Path) -> Path:
    """`brainvq train vqvae` on tiny_3d.yaml into folder/run (seconds): a tiny 3D run."""
    run = folder / "run"
    run_ok(train_cmd(run, config=TINY_3D))
    return run
