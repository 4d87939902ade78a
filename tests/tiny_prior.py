"""A tiny random-init PixelCNN prior and code maps for the sampler and healing tests (pytest puts
tests/ on sys.path)."""

from __future__ import annotations

import pytest
import torch

from brainvq.models.pixelcnn import GatedPixelCNN, PixelCNNConfig

K = 8  # codes of the tiny prior


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are too small to gain from threads, and on a shared machine an OpenMP
    barrier waiting for a descheduled thread makes each op up to 20x slower. Autouse in every
    module that imports it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(n_levels: int = 0, **overrides: int) -> GatedPixelCNN:
    """A random-init prior over K = 8 codes; deterministic weights."""
    torch.manual_seed(0)
    fields: dict[str, int] = dict(
        codebook_size=K,
        n_levels=n_levels,
        embed_dim=8,
        channels=16,
        n_layers=3,
        kernel_size=3,
        first_kernel=3,
        head_channels=16,
    )
    fields.update(overrides)
    return GatedPixelCNN(PixelCNNConfig(**fields))


def codes_like(n: int, h: int, w: int, seed: int = 5) -> torch.Tensor:
    """(n, h, w) int64 in [0, K)."""
    return torch.randint(0, K, (n, h, w), generator=torch.Generator().manual_seed(seed))


def neighbour_model(n_levels: int = 0, **overrides: int | str) -> GatedPixelCNN:
    """A tiny prior of whole subjects (neighbour: previous) whose weights are all perturbed, so
    that the slice below shapes the logits (its NeighbourMap starts at zero)."""
    fields: dict = dict(neighbour="previous", neighbour_channels=8, cond_channels=6)
    fields.update(overrides)
    model = tiny_model(n_levels, **fields)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()
