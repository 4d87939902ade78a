"""Every figure function writes one readable PNG of sensible size, atomically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainvq.report import plots

MAX_BYTES = 600_000


def check_png(path: Path, expected: Path) -> Image.Image:
    assert path == expected and path.is_file()
    with Image.open(path) as img:
        img.verify()
    img = Image.open(path)
    assert img.format == "PNG"
    assert min(img.size) > 200, img.size
    assert 5_000 < path.stat().st_size < MAX_BYTES
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"
    return img


def test_plot_dataset_samples(tmp_path: Path, images_u8: np.ndarray) -> None:
    out = tmp_path / "figures" / "dataset.png"
    split = {"train": images_u8, "validate": images_u8[:3], "test": images_u8[:1]}
    img = check_png(plots.plot_dataset_samples(split, out), out)
    assert img.mode == "L"  # grey images, grey text: stored one byte per pixel
    with pytest.raises(ValueError, match="validate"):
        plots.plot_dataset_samples({"validate": images_u8[0]}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="empty"):
        plots.plot_dataset_samples({}, tmp_path / "bad.png")


def test_plot_reconstructions(tmp_path: Path, images: np.ndarray) -> None:
    recons = np.clip(images + 0.05, 0, 1)
    out = tmp_path / "recons.png"
    img = check_png(plots.plot_reconstructions(images, recons, np.linspace(0.8, 0.9, 6), out), out)
    assert img.size[0] > img.size[1]  # 6 columns, 3 rows
    with pytest.raises(ValueError, match="same N images"):
        plots.plot_reconstructions(images, recons[:5], np.ones(6), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="same N images"):
        plots.plot_reconstructions(images, recons, np.ones(5), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_plot_samples_with_and_without_levels(
    tmp_path: Path, make_phantoms: Callable[..., np.ndarray]
) -> None:
    stack = make_phantoms(20, seed=1)
    out = tmp_path / "samples.png"
    check_png(plots.plot_samples(stack, out, "Prior samples", levels=np.arange(20) % 32), out)
    out2 = tmp_path / "samples_plain.png"
    narrow = check_png(plots.plot_samples(stack, out2, "Prior samples", ncols=5), out2)
    out3 = tmp_path / "samples_wide.png"
    wide = check_png(plots.plot_samples(stack, out3, "Prior samples", ncols=10), out3)
    assert narrow.size[0] < wide.size[0] and narrow.size[1] > wide.size[1]  # 4x5 vs 2x10
    with pytest.raises(ValueError, match="levels"):
        plots.plot_samples(stack, tmp_path / "bad.png", "x", levels=np.arange(3))
    with pytest.raises(ValueError, match="uint8 or float"):
        plots.plot_samples(stack.astype(np.int32), tmp_path / "bad.png", "x")


def test_plot_samples_by_level(tmp_path: Path, make_phantoms: Callable[..., np.ndarray]) -> None:
    by_level = {20: make_phantoms(4, seed=2), 5: make_phantoms(3, seed=3)}
    out = tmp_path / "levels.png"
    check_png(plots.plot_samples_by_level(by_level, out), out)


def test_plot_completions(
    tmp_path: Path, images: np.ndarray, make_phantoms: Callable[..., np.ndarray]
) -> None:
    completions = np.stack([make_phantoms(3, seed=s) for s in range(3)])  # (3, 3, 64, 64)
    out = tmp_path / "completions.png"
    check_png(plots.plot_completions(images[:3], 24, completions, out), out)
    with pytest.raises(ValueError, match="kept_rows_px"):
        plots.plot_completions(images[:3], 65, completions, tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"\(B, n, H, W\)"):
        plots.plot_completions(images[:2], 24, completions, tmp_path / "bad.png")


def test_plot_code_usage(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    counts = rng.multinomial(20_000, rng.dirichlet(np.full(512, 0.3)))
    out = tmp_path / "codes.png"
    check_png(plots.plot_code_usage(counts, out, title_extra="(validate)"), out)
    with pytest.raises(ValueError, match="positive sum"):
        plots.plot_code_usage(np.zeros(8), tmp_path / "bad.png")


def test_plot_curves(tmp_path: Path) -> None:
    epochs = range(1, 6)
    history = {
        "total loss": {
            "train": [(e, 1 / e) for e in epochs],
            "validation": [(e, 1.2 / e) for e in epochs],
        },
        "reconstruction": {"train": [(e, 0.5 / e) for e in epochs], "validation": []},
        "perplexity": {"train": [(e, 100.0 + e) for e in epochs]},
    }
    out = tmp_path / "curves.png"
    check_png(plots.plot_curves(history, out, "VQ-VAE training"), out)
    with pytest.raises(ValueError, match="no points"):
        plots.plot_curves({"loss": {"train": []}}, tmp_path / "bad.png", "x")


def test_plot_ssim_distribution(tmp_path: Path) -> None:
    out = tmp_path / "ssim.png"
    check_png(plots.plot_ssim_distribution(np.random.default_rng(0).beta(20, 2, 300), out), out)
    with pytest.raises(ValueError, match="empty"):
        plots.plot_ssim_distribution(np.array([]), tmp_path / "bad.png")


def test_plot_codebook_pca(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    codebook = rng.standard_normal((64, 16))
    counts = rng.integers(0, 50, 64)
    counts[:10] = 0
    out = tmp_path / "pca.png"
    check_png(plots.plot_codebook_pca(codebook, counts, out), out)
    with pytest.raises(ValueError, match="counts for"):
        plots.plot_codebook_pca(codebook, counts[:5], tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"\(K>=2, D>=2\)"):
        plots.plot_codebook_pca(codebook[:, :1], counts, tmp_path / "bad.png")


def test_failed_write_keeps_the_previous_file(tmp_path: Path, images: np.ndarray) -> None:
    out = tmp_path / "samples.png"
    plots.plot_samples(images, out, "first")
    before = out.read_bytes()
    with pytest.raises(ValueError):
        plots.plot_samples(images, out, "second", levels=np.arange(2))
    assert out.read_bytes() == before


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32)


def test_each_figure_draws_its_data(
    tmp_path: Path, images: np.ndarray, make_phantoms: Callable[..., np.ndarray]
) -> None:
    """Drawn from other data (same shapes, same labels), every figure comes out different:
    a function that ignored its input, or drew a blank panel, would fail here."""
    rng = np.random.default_rng(0)
    other = make_phantoms(6, seed=9)[:, ::-1].copy()  # other slices, upside down
    counts = rng.multinomial(20_000, rng.dirichlet(np.full(64, 0.3)))
    codebook = rng.standard_normal((64, 8))
    epochs = range(1, 6)
    figures = {
        "dataset": lambda x, s: plots.plot_dataset_samples({"train": x, "test": x[:2]}, s),
        "reconstructions": lambda x, s: plots.plot_reconstructions(
            images, x, np.linspace(0.8, 0.9, 6), s
        ),
        "samples": lambda x, s: plots.plot_samples(x, s, "samples", levels=np.arange(6)),
        "by level": lambda x, s: plots.plot_samples_by_level({3: x[:3], 9: x[3:]}, s),
        "completions": lambda x, s: plots.plot_completions(x[:2], 24, np.stack([x[:3]] * 2), s),
    }
    for name, draw in figures.items():
        a, b = draw(images, tmp_path / f"{name}_a.png"), draw(other, tmp_path / f"{name}_b.png")
        assert pixels(a).shape == pixels(b).shape, name
        assert np.abs(pixels(a) - pixels(b)).mean() > 1.0, f"{name} does not show its images"
    pairs = {
        "code usage": [
            plots.plot_code_usage(c, tmp_path / f"codes_{i}.png")
            for i, c in enumerate((counts, counts[::-1].copy()))
        ],
        "pca": [
            plots.plot_codebook_pca(codebook, c, tmp_path / f"pca_{i}.png")
            for i, c in enumerate((counts, np.where(counts > 200, 0, counts)))
        ],
        "curves": [
            plots.plot_curves(
                {"loss": {"train": [(e, f(e)) for e in epochs]}}, tmp_path / f"c_{i}.png", "x"
            )
            for i, f in enumerate((lambda e: 1 / e, lambda e: e * e))
        ],
        "ssim": [
            plots.plot_ssim_distribution(rng.beta(*ab, 300), tmp_path / f"s_{i}.png")
            for i, ab in enumerate(((20, 2), (2, 20)))
        ],
    }
    for name, (a, b) in pairs.items():
        assert np.abs(pixels(a) - pixels(b)).mean() > 0.2, f"{name} does not show its data"
