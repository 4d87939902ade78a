"""The prior's speed path equals its reference: the loss over rows of logits (log-softmax along
channels_last memory) gives the loss and gradients of cross-entropy over the (B, K, h, w)
logits, in either layout and in bf16 autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_prior import one_thread  # noqa: F401

from brainvq.models.pixelcnn import PixelCNNConfig
from brainvq.run_config import TrainConfig
from brainvq.training.prior_module import PriorModule

K, SIDE, LEVELS = 16, 8, 4


def module(channels_last: bool) -> PriorModule:
    torch.manual_seed(0)
    config = PixelCNNConfig(
        codebook_size=K,
        n_levels=LEVELS,
        embed_dim=8,
        channels=8,
        n_layers=2,
        head_channels=16,
        cond_channels=8,
        map_size=SIDE,
        neighbour="previous",
        neighbour_channels=8,
        neighbour_dropout=0.0,
    )
    return PriorModule(config, TrainConfig(channels_last=channels_last)).train()


def reference_nll(prior: PriorModule, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Cross-entropy over the (B, K, h, w) logits as they come."""
    codes = batch[0]
    logits = prior.model(codes, batch[1], batch[2])  # (B, K, h, w)
    return F.cross_entropy(logits.float(), codes)


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_loss_over_rows_equals_cross_entropy_over_the_map(
    channels_last: bool, dtype: torch.dtype | None
) -> None:
    prior = module(channels_last)
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, K, (3, SIDE, SIDE), generator=g)
    batch = (codes, torch.tensor([0, 2, 3]), codes.roll(1, 0))
    results = []
    for loss in (prior._nll_nats, lambda b: reference_nll(prior, b)):
        prior.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            value = loss(batch)
        value.backward()
        grads = [p.grad.clone() for p in prior.model.parameters()]
        results.append((value.detach(), grads))
    (fast, fast_grads), (ref, ref_grads) = results
    assert fast.dtype == torch.float32
    # the same sums in another order: float32 rounding apart
    torch.testing.assert_close(fast, ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
