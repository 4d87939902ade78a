"""Image-quality and code-usage metrics: SSIM, PSNR, MAE, MSE, perplexity, bits per pixel.

Images are `(B, 1, H, W)` float tensors in [0, 1]; every image metric returns one value per
image, shape `(B,)`, so callers can average, take minima or plot distributions.

SSIM is the Wang et al. (2004) index with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
K2 = 0.03, computed exactly as scikit-image's `structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1)`: the local statistics are only taken
where the whole window lies inside the image, which is the region scikit-image keeps after it
crops (win - 1) / 2 pixels from each border.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import Tensor

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5): scikit-image's truncate=3.5 gives an 11-tap window
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(x: Tensor, y: Tensor) -> None:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise ValueError(f"expected two torch tensors, got {type(x).__name__}, {type(y).__name__}")
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"expected images of shape (B, 1, H, W), got {tuple(x.shape)}")
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> Tensor:
    """The separable 1D Gaussian taps, (2r+1,) summing to 1, as scipy.ndimage builds them."""
    offsets = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def _band(size: int, taps: Tensor) -> Tensor:
    """(size - n + 1, size) matrix whose row i holds the n taps at columns i .. i + n - 1."""
    n = taps.numel()
    rows = torch.arange(size - n + 1, device=taps.device)[:, None]  # (size - n + 1, 1)
    cols = rows + torch.arange(n, device=taps.device)[None, :]  # (size - n + 1, n)
    band = torch.zeros(size - n + 1, size, dtype=taps.dtype, device=taps.device)
    return band.scatter_(1, cols, taps.expand(size - n + 1, n))


def _blur_valid(z: Tensor, taps: Tensor) -> Tensor:
    """Gaussian-filter z: (N, 1, H, W) keeping only fully covered pixels -> (N, 1, H-2r, W-2r).

    The separable filter is two matrix products with banded matrices: on a CPU much faster than
    a one-channel conv2d, forward and backward (docs/results.md, "What moved the numbers": 0.03 s
    instead of 0.5 s for a batch of 16), which matters when SSIM is a loss.
    """
    h, w = z.shape[-2:]
    return _band(h, taps) @ z @ _band(w, taps).t()  # (N, 1, H-2r, W-2r)


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean structural similarity per image.

    x, y: (B, 1, H, W) float, values in [0, data_range]; H, W >= 11.
    Returns (B,) float in [-1, 1]; 1 for identical images. Computed in fp32 (fp64 for fp64
    inputs) even inside an autocast region, where bf16 would lose the local variances' digits.
    Differentiable, so 1 - ssim can be a training loss.
    """
    _check_pair(x, y)
    win = 2 * SSIM_RADIUS + 1
    if min(x.shape[-2:]) < win:
        raise ValueError(f"SSIM needs images of at least {win}x{win}, got {tuple(x.shape[-2:])}")
    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _ssim(x.to(dtype), y.to(dtype), data_range)


def _ssim(x: Tensor, y: Tensor, data_range: float) -> Tensor:
    """ssim() without the checks, for x, y of one float dtype, outside autocast."""
    taps = _gaussian_window(x.dtype, x.device)
    b = x.shape[0]
    stats = _blur_valid(torch.cat([x, y, x * x, y * y, x * y]), taps)  # (5B, 1, h, w)
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.split(b)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (num / den).flatten(1).mean(dim=1)


def mse(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error per image. x, y: (B, 1, H, W) float. Returns (B,)."""
    _check_pair(x, y)
    return (x.float() - y.float()).pow(2).flatten(1).mean(dim=1)


def mae(x: Tensor, y: Tensor) -> Tensor:
    """Mean absolute error per image. x, y: (B, 1, H, W) float. Returns (B,)."""
    _check_pair(x, y)
    return (x.float() - y.float()).abs().flatten(1).mean(dim=1)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image in dB: 10 log10(data_range^2 / mse).

    x, y: (B, 1, H, W) float in [0, data_range]. Returns (B,) float; an image identical to
    its reference (mse == 0) gets +inf, so averages over a batch should skip or cap it.
    """
    err = mse(x, y)
    return 10.0 * torch.log10(data_range**2 / err)  # x / 0 -> inf, log10(inf) -> inf


def _as_counts(counts: Tensor | np.ndarray) -> np.ndarray:
    arr = counts.detach().cpu().numpy() if isinstance(counts, Tensor) else np.asarray(counts)
    if arr.ndim != 1:
        raise ValueError(f"expected code counts of shape (K,), got {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"code counts must be non-negative, got minimum {arr.min()}")
    return arr.astype(np.float64)


def perplexity(counts: Tensor | np.ndarray) -> float:
    """exp(entropy) of the code distribution: K for uniform use of K codes, 1 for one code.

    counts: (K,) non-negative (counts or probabilities). All zeros -> ValueError.
    """
    arr = _as_counts(counts)
    total = arr.sum()
    if total <= 0:
        raise ValueError("perplexity of empty code counts (all zero) is undefined")
    p = arr[arr > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def codes_used(counts: Tensor | np.ndarray) -> int:
    """Number of codes with a non-zero count. counts: (K,)."""
    return int((_as_counts(counts) > 0).sum())


def code_histogram(indices: Tensor | np.ndarray, codebook_size: int) -> np.ndarray:
    """How often each code occurs.

    indices: (N, h, w) int in [0, codebook_size). Returns (K,) int64."""
    idx = indices.detach().cpu().numpy() if isinstance(indices, Tensor) else np.asarray(indices)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"code indices must be integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= codebook_size):
        raise ValueError(
            f"code indices must lie in [0, {codebook_size}), got range [{idx.min()}, {idx.max()}]"
        )
    return np.bincount(idx.ravel().astype(np.int64), minlength=codebook_size).astype(np.int64)


def bits_per_pixel(
    latent_hw: tuple[int, int], codebook_size: int, image_hw: tuple[int, int]
) -> float:
    """Size of a code map in bits per image pixel: h * w * log2(K) / (H * W).

    32x32 codes from a 512-code book for a 128x128 image: 1024 * 9 / 16384 = 0.5625.
    """
    if codebook_size < 2:
        raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
    (h, w), (hh, ww) = latent_hw, image_hw
    if min(h, w, hh, ww) <= 0:
        raise ValueError(f"sizes must be positive, got latent {latent_hw}, image {image_hw}")
    return h * w * math.log2(codebook_size) / (hh * ww)


@dataclasses.dataclass
class ReconstructionMetrics:
    """Accumulates per-image reconstruction metrics over batches.

    Call `update(x, x_hat)` for every batch, then `compute()`. PSNR is averaged over the
    images that are not reconstructed exactly (those have infinite PSNR); if every image is
    exact the mean PSNR is inf.

    Memory: the per-image SSIM (8 bytes an image) lives in one buffer that doubles when full,
    the other metrics as running sums; no per-batch array is kept. (Keeping one small array a
    batch between the batches' large temporaries fragmented the heap: evaluating 13,000 slices
    grew the process by 110 MB.)
    """

    data_range: float = 1.0
    _ssim: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0), repr=False)
    _n: int = 0
    _sums: dict[str, float] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(("psnr", "psnr_n", "mae", "mse"), 0.0), repr=False
    )

    @torch.no_grad()
    def update(self, x: Tensor, x_hat: Tensor) -> None:
        """x: (B, 1, H, W) originals, x_hat: (B, 1, H, W) reconstructions, float in [0, 1]."""
        x, x_hat = x.detach(), x_hat.detach()
        s = ssim(x, x_hat, self.data_range).cpu().double().numpy()  # (B,)
        p = psnr(x, x_hat, self.data_range).cpu().double()  # (B,)
        finite = p[torch.isfinite(p)]
        if self._n + len(s) > len(self._ssim):
            grown = np.zeros(max(2 * len(self._ssim), self._n + len(s), 1024))
            grown[: self._n] = self._ssim[: self._n]
            self._ssim = grown
        self._ssim[self._n : self._n + len(s)] = s
        self._n += len(s)
        self._sums["psnr"] += float(finite.sum())
        self._sums["psnr_n"] += len(finite)
        self._sums["mae"] += float(mae(x, x_hat).double().sum())
        self._sums["mse"] += float(mse(x, x_hat).double().sum())

    def compute(self) -> dict:
        """Returns {ssim, ssim_min, psnr, mae, mse: float, n_images: int,
        ssim_per_image: (N,) float64 array}."""
        if not self._n:
            raise ValueError("ReconstructionMetrics.compute() called before any update()")
        s = self._ssim[: self._n].copy()
        sums = self._sums
        return {
            "ssim": float(s.mean()),
            "ssim_min": float(s.min()),
            "psnr": sums["psnr"] / sums["psnr_n"] if sums["psnr_n"] else math.inf,
            "mae": sums["mae"] / self._n,
            "mse": sums["mse"] / self._n,
            "n_images": self._n,
            "ssim_per_image": s,
        }

    def reset(self) -> None:
        """Forget all batches seen so far."""
        self._n = 0
        self._sums = dict.fromkeys(self._sums, 0.0)
