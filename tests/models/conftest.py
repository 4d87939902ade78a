"""Fixtures for the model tests: tiny VQ-VAE configs and small synthetic images."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from brainvq.models.vqvae import VQVAEConfig


def tiny_config(**overrides: object) -> VQVAEConfig:
    """A VQ-VAE small enough to train for a few dozen steps in a second or two."""
    fields: dict[str, object] = dict(
        image_size=32,
        downsample=4,
        channels=(8, 16),
        res_blocks=1,
        res_channels=8,
        code_dim=8,
        codebook_size=16,
        restart_buffer=256,
        dead_code_steps=5,
    )
    fields.update(overrides)
    return VQVAEConfig(**fields)


def blob_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """n smooth images (n, 1, size, size) float in [0, 1]: a bright ellipse on a dark background,
    each with its own centre, radii and brightness, like a crude brain slice."""
    g = torch.Generator().manual_seed(seed)
    coords = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (size, size)
    centre = (torch.rand(n, 2, generator=g) - 0.5) * 0.4
    radii = 0.4 + 0.4 * torch.rand(n, 2, generator=g)
    level = 0.5 + 0.5 * torch.rand(n, generator=g)
    dy = (yy[None] - centre[:, 0, None, None]) / radii[:, 0, None, None]
    dx = (xx[None] - centre[:, 1, None, None]) / radii[:, 1, None, None]
    inside = torch.sigmoid((1 - (dy**2 + dx**2)) * 8)  # (n, size, size) soft mask
    return (inside * level[:, None, None]).unsqueeze(1).clamp(0, 1)


@pytest.fixture
def single_thread() -> Iterator[None]:
    """Run a test on one intra-op thread: these tensors are tiny, and on a shared two-core
    machine a second thread mostly waits at barriers (tests ran 20x slower with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_config() -> Callable[..., VQVAEConfig]:
    """tiny_config, for tests that build several models."""
    return tiny_config


@pytest.fixture
def make_images() -> Callable[..., torch.Tensor]:
    """blob_images, for tests that need their own images."""
    return blob_images


@pytest.fixture
def images() -> torch.Tensor:
    """(4, 1, 32, 32) float in [0, 1]."""
    return blob_images(4)
