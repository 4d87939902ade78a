"""A prior of whole subjects learns what the slice below says: on a toy cohort whose slice k is
a copy of slice k - 1, the prior with the neighbour learns to copy (NLL near 0 bits per code
on new subjects' upper slices) while the same prior without it cannot beat chance (3 bits for 8
codes). Trained through the pieces a run trains with: CodeMapDataset with the rows below
(below_rows), PriorModule's loss (neighbour dropout included)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny_prior import one_thread  # noqa: F401
from torch.utils.data import DataLoader

from brainvq.data.dataset import CodeMapDataset
from brainvq.inference.slice_below import below_rows
from brainvq.models.pixelcnn import PixelCNNConfig
from brainvq.run_config import TrainConfig
from brainvq.training.prior_module import PriorModule

K, SIDE, LEVELS = 8, 6, 4


def toy_cohort(subjects: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes (S * L, h, w) int16, levels, subject ids): one random map per subject, copied
    to each of its L slices; the rows shuffled, as a split's slices need not be in order."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, K, (subjects, SIDE, SIDE))
    codes = np.repeat(base, LEVELS, axis=0).astype(np.int16)
    levels = np.tile(np.arange(LEVELS), subjects).astype(np.int16)
    subject = np.repeat([f"s{i}" for i in range(subjects)], LEVELS)
    order = rng.permutation(len(codes))
    return codes[order], levels[order], subject[order]


def trained(neighbour: str) -> tuple[PriorModule, tuple[np.ndarray, ...]]:
    torch.manual_seed(0)
    config = PixelCNNConfig(
        codebook_size=K,
        n_levels=LEVELS,
        embed_dim=8,
        channels=16,
        n_layers=2,
        head_channels=32,
        cond_channels=16,
        map_size=SIDE,
        neighbour=neighbour,
        neighbour_channels=16,
        neighbour_layers=1,
        neighbour_dropout=0.05,
    )
    module = PriorModule(config, TrainConfig())
    codes, levels, subject = toy_cohort(600, seed=1)
    rows = below_rows(subject, levels) if neighbour != "none" else None
    loader = DataLoader(CodeMapDataset(codes, levels, rows), batch_size=16, shuffle=True)
    optimiser = torch.optim.Adam(module.parameters(), lr=1e-2)
    module.train()
    for batch in loader:  # 150 steps
        loss = module._nll_nats(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return module.eval(), toy_cohort(24, seed=2)


@pytest.mark.parametrize("neighbour", ["previous", "none"])
def test_a_prior_with_the_neighbour_learns_to_copy_the_slice_below(neighbour: str) -> None:
    module, (codes, levels, subject) = trained(neighbour)
    rows = below_rows(subject, levels)
    dataset = CodeMapDataset(codes, levels, rows if neighbour != "none" else None)
    items = dataset.__getitems__(list(range(len(codes))))
    batch = [torch.stack(t) for t in zip(*items, strict=True)]  # codes, levels[, below]
    with torch.no_grad():
        logits = module.model(*batch)  # (N, K, h, w)
        nll = torch.nn.functional.cross_entropy(logits, batch[0], reduction="none")
    bits = nll.mean(dim=(1, 2)).numpy() / math.log(2)  # (N,)
    upper, lowest = bits[rows >= 0].mean(), bits[rows < 0].mean()
    assert lowest > 2.5  # the lowest slice is a random map either way: log2(8) = 3 bits
    if neighbour == "previous":
        assert upper < 0.3, f"{upper:.3f} bits per code on copied slices"
    else:
        assert upper > 2.5, f"{upper:.3f} bits per code without the neighbour"


def test_neighbour_noise_replaces_a_share_of_the_codes_below_in_training_only() -> None:
    """neighbour_noise: in training, about that share of the known codes below is redrawn
    uniformly (a redrawn code equals the old one 1/K of the time), a missing slice below stays
    missing; in evaluation the slice below is passed as it is."""
    from brainvq.models.neighbour_map import NO_SLICE

    config = PixelCNNConfig(
        codebook_size=K,
        n_levels=LEVELS,
        map_size=SIDE,
        neighbour="previous",
        neighbour_dropout=0.0,
        neighbour_noise=0.5,
    )
    module = PriorModule(config, TrainConfig())
    torch.manual_seed(0)
    below = torch.randint(0, K, (400, SIDE, SIDE))
    below[:100] = NO_SLICE
    batch = (below.clone(), torch.zeros(400, dtype=torch.long), below)
    module.train()
    noisy = module._below(batch)
    assert (noisy[:100] == NO_SLICE).all()
    assert ((noisy[100:] >= 0) & (noisy[100:] < K)).all()
    changed = (noisy[100:] != below[100:]).float().mean().item()
    assert abs(changed - 0.5 * (1 - 1 / K)) < 0.02
    module.eval()
    assert torch.equal(module._below(batch), below)
