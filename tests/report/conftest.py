"""Fixtures for the report tests: small brain-like image stacks (no real data needed)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter


def phantoms(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """(n, size, size) float32 in [0, 1]: head-like ellipses with texture and ventricles."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    out = []
    for _ in range(n):
        r = (xx / (0.7 + 0.1 * rng.random())) ** 2 + (yy / (0.85 + 0.1 * rng.random())) ** 2
        texture = gaussian_filter(rng.standard_normal((size, size)), 1.5)
        img = np.where(r < 1.0, 0.4, 0.0)
        img = np.where(r < 0.8, 0.7 + 0.1 * texture / texture.std(), img)
        img = np.where((xx / 0.12) ** 2 + (yy / 0.3) ** 2 < 1.0, 0.15, img)
        out.append(np.clip(gaussian_filter(img, 0.8), 0.0, 1.0))
    return np.stack(out).astype(np.float32)


@pytest.fixture
def make_phantoms() -> Callable[..., np.ndarray]:
    """The `phantoms(n, size=64, seed=0)` factory, for tests that need several stacks."""
    return phantoms


@pytest.fixture
def images() -> np.ndarray:
    """(6, 64, 64) float32 in [0, 1]."""
    return phantoms(6)


@pytest.fixture
def images_u8(images: np.ndarray) -> np.ndarray:
    """(6, 64, 64) uint8."""
    return np.round(images * 255).astype(np.uint8)
