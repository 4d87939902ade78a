"""Image-quality and code-usage metrics against scikit-image and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from brainvq.metrics import (
    ReconstructionMetrics,
    bits_per_pixel,
    code_histogram,
    codes_used,
    mae,
    mse,
    perplexity,
    psnr,
    ssim,
)


def brain_like(seed: int, size: int = 96) -> np.ndarray:
    """A smooth head-like phantom (size, size) float64 in [0, 1]: skull ring, textured tissue,
    dark ventricles, black background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    r = (xx / (0.7 + 0.1 * rng.random())) ** 2 + (yy / (0.85 + 0.1 * rng.random())) ** 2
    texture = gaussian_filter(rng.standard_normal((size, size)), 2.0)
    img = np.where(r < 1.0, 0.4, 0.0)
    img = np.where(r < 0.8, 0.7 + 0.1 * texture / texture.std(), img)
    ventricles = (xx / 0.12) ** 2 + ((yy + 0.05) / 0.3) ** 2 < 1.0
    img = np.where(ventricles, 0.15, img)
    return np.clip(gaussian_filter(img, 1.0), 0.0, 1.0)


def variants(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(6, H, W) references and (6, H, W) distorted versions: noise, blur, contrast, shift,
    another phantom, and a heavy combination."""
    rng = np.random.default_rng(seed + 100)
    ref = brain_like(seed)
    other = brain_like(seed + 1)
    distorted = [
        ref + 0.05 * rng.standard_normal(ref.shape),
        gaussian_filter(ref, 1.5),
        0.6 * ref + 0.2,
        np.roll(ref, 3, axis=1),
        other,
        gaussian_filter(ref, 2.5) + 0.15 * rng.standard_normal(ref.shape),
    ]
    refs = np.stack([ref] * len(distorted))
    return refs, np.clip(np.stack(distorted), 0.0, 1.0)


def as_batch(images: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(images).to(dtype).unsqueeze(1)  # (B, 1, H, W)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ssim_matches_scikit_image(dtype: torch.dtype) -> None:
    refs, dist = variants(seed=0)
    ours = ssim(as_batch(refs, dtype), as_batch(dist, dtype)).double().numpy()
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    reference = [
        structural_similarity(
            a.astype(np_dtype),
            b.astype(np_dtype),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1,
        )
        for a, b in zip(refs, dist, strict=True)
    ]
    assert ours.shape == (len(reference),)
    np.testing.assert_allclose(ours, reference, atol=1e-3)
    # The distortions span a wide range, so agreement is not an artefact of all values ~ 1.
    assert min(reference) < 0.5 < max(reference) < 0.99


def test_ssim_on_a_non_square_image_matches_scikit_image() -> None:
    a = brain_like(3, size=64)[:, 5:55]
    b = np.clip(a + 0.1 * np.random.default_rng(1).standard_normal(a.shape), 0, 1)
    expected = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1
    )
    ours = ssim(as_batch(a[None], torch.float64), as_batch(b[None], torch.float64))
    assert abs(float(ours[0]) - expected) < 1e-6


def test_ssim_of_identical_images_is_one_and_symmetric() -> None:
    refs, dist = variants(seed=1)
    x, y = as_batch(refs), as_batch(dist)
    torch.testing.assert_close(ssim(x, x), torch.ones(len(refs)), atol=1e-5, rtol=0)
    torch.testing.assert_close(ssim(x, y), ssim(y, x), atol=1e-6, rtol=0)


def test_ssim_data_range_scales_consistently() -> None:
    refs, dist = variants(seed=2)
    unit = ssim(as_batch(refs), as_batch(dist))
    scaled = ssim(as_batch(refs * 255), as_batch(dist * 255), data_range=255.0)
    torch.testing.assert_close(unit, scaled, atol=1e-4, rtol=0)


def test_ssim_mixed_precision_inputs() -> None:
    refs, dist = variants(seed=4)
    half = ssim(as_batch(refs).half(), as_batch(dist))
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, ssim(as_batch(refs), as_batch(dist)), atol=2e-3, rtol=0)


def test_ssim_inside_autocast_stays_fp32() -> None:
    # under bf16 autocast (Lightning's bf16-mixed validation) the blur must not run in bf16
    refs, dist = variants(seed=6)
    x, y = as_batch(refs), as_batch(dist)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = ssim(x, y)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, ssim(x, y), atol=1e-6, rtol=0)


def test_one_minus_ssim_is_a_loss_with_gradients() -> None:
    refs, dist = variants(seed=7)
    y = as_batch(dist).requires_grad_(True)
    (1 - ssim(as_batch(refs), y)).mean().backward()
    assert y.grad is not None and y.grad.abs().max() > 0


def test_ssim_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 1, 8, 32), torch.rand(1, 1, 8, 32))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        ssim(torch.rand(2, 32, 32), torch.rand(2, 32, 32))
    with pytest.raises(ValueError, match="differ"):
        ssim(torch.rand(2, 1, 32, 32), torch.rand(3, 1, 32, 32))


def test_psnr_mse_mae_hand_computed() -> None:
    x = torch.zeros(2, 1, 16, 16)
    y = torch.zeros(2, 1, 16, 16)
    y[0] = 0.1  # mse 0.01 -> 20 dB
    y[1, :, :8] = 0.5  # half the pixels off by 0.5: mse 0.125 -> 10 log10(8) dB, mae 0.25
    torch.testing.assert_close(mse(x, y), torch.tensor([0.01, 0.125]))
    torch.testing.assert_close(mae(x, y), torch.tensor([0.1, 0.25]))
    torch.testing.assert_close(psnr(x, y), torch.tensor([20.0, 10 * math.log10(8)]))
    torch.testing.assert_close(psnr(x * 255, y * 255, data_range=255.0), psnr(x, y))


def test_psnr_of_identical_images_is_inf() -> None:
    x = torch.rand(3, 1, 16, 16)
    assert torch.isinf(psnr(x, x)).all() and (psnr(x, x) > 0).all()


def test_perplexity_and_codes_used() -> None:
    k = 512
    assert perplexity(np.ones(k)) == pytest.approx(k)
    assert perplexity(torch.full((k,), 7)) == pytest.approx(k)
    one_hot = np.zeros(k)
    one_hot[17] = 1000
    assert perplexity(one_hot) == pytest.approx(1.0)
    assert perplexity(np.array([5, 5, 0, 0])) == pytest.approx(2.0)
    assert codes_used(np.array([5, 5, 0, 0])) == 2
    assert codes_used(torch.tensor([0, 1, 2, 0, 3])) == 3
    with pytest.raises(ValueError, match="all zero"):
        perplexity(np.zeros(4))
    with pytest.raises(ValueError, match="non-negative"):
        perplexity(np.array([1, -1]))
    with pytest.raises(ValueError, match=r"\(K,\)"):
        codes_used(np.ones((2, 2)))


def test_code_histogram() -> None:
    indices = torch.tensor([[[0, 1], [1, 3]], [[3, 3], [0, 1]]])  # (2, 2, 2)
    hist = code_histogram(indices, codebook_size=5)
    assert hist.dtype == np.int64
    np.testing.assert_array_equal(hist, [2, 3, 0, 3, 0])
    rng = np.random.default_rng(0)
    many = rng.integers(0, 512, size=(4, 32, 32)).astype(np.int16)
    assert code_histogram(many, 512).sum() == 4 * 32 * 32
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        code_histogram(torch.tensor([[[5]]]), codebook_size=5)
    with pytest.raises(ValueError, match="integers"):
        code_histogram(torch.zeros(1, 2, 2), codebook_size=5)


def test_bits_per_pixel() -> None:
    assert bits_per_pixel((32, 32), 512, (128, 128)) == pytest.approx(0.5625)
    assert bits_per_pixel((16, 16), 256, (64, 64)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="codebook_size"):
        bits_per_pixel((32, 32), 1, (128, 128))


def test_reconstruction_metrics_accumulates_batches() -> None:
    refs, dist = variants(seed=5)
    x, x_hat = as_batch(refs), as_batch(dist)
    acc = ReconstructionMetrics()
    with pytest.raises(ValueError, match="before any update"):
        acc.compute()
    acc.update(x[:4], x_hat[:4])
    acc.update(x[4:], x_hat[4:])
    acc.update(x[:2], x[:2])  # exact reconstructions: infinite PSNR, skipped in the mean
    result = acc.compute()
    per_image = torch.cat([ssim(x, x_hat), ssim(x[:2], x[:2])]).double().numpy()
    assert result["n_images"] == len(refs) + 2
    np.testing.assert_allclose(result["ssim_per_image"], per_image, atol=1e-6)
    assert result["ssim"] == pytest.approx(per_image.mean(), abs=1e-6)
    assert result["ssim_min"] == pytest.approx(per_image.min(), abs=1e-6)
    assert result["psnr"] == pytest.approx(float(psnr(x, x_hat).mean()), abs=1e-4)
    assert result["mse"] == pytest.approx(float(mse(x, x_hat).sum()) / (len(refs) + 2), rel=1e-5)
    assert result["mae"] == pytest.approx(float(mae(x, x_hat).sum()) / (len(refs) + 2), rel=1e-5)
    acc.reset()
    acc.update(x[:1], x[:1])
    assert acc.compute()["psnr"] == math.inf
