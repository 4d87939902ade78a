"""The quantizer's speed path equals its reference: nearest codes scored in blocks of rows
choose the same codes as one (N, K) product, and training steps leave the same codebook and
EMA state."""

from __future__ import annotations

import pytest
import torch

import brainvq.models.quantizer as quantizer
from brainvq.models.quantizer import VectorQuantizer

pytestmark = pytest.mark.usefixtures("single_thread")


def plain_nearest(flat: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The reference: all (N, K) squared distances at once, then argmin. (N,) int64."""
    return torch.cdist(flat.double(), codebook.double()).argmin(1)


def latents(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g)


@pytest.mark.parametrize("n", [0, 1, 511, 512, 1300])
def test_blocked_nearest_equals_one_product_and_the_exact_distances(n: int) -> None:
    flat = latents(n, 16, seed=n)
    codebook = latents(64, 16, seed=1)
    codebook[7] = codebook[3]  # a tie: both ways must pick the first of equal codes
    flat[: min(n, 4)] = codebook[3]
    blocked = quantizer._nearest(flat, codebook)
    one_product = torch.addmm(codebook.pow(2).sum(1)[None, :], flat, codebook.t(), alpha=-2)
    assert blocked.dtype == torch.int64 and blocked.shape == (n,)
    assert torch.equal(blocked, one_product.argmin(1))
    assert torch.equal(blocked, plain_nearest(flat, codebook))
    assert not (blocked == 7).any()


@pytest.mark.parametrize("update", ["ema", "loss"])
def test_training_steps_leave_the_same_state_with_one_block(
    update: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of 512 rows vs one block of every row: same indices, loss and codebook state
    (EMA counts and sums, usage, restarts) after steps of N = 2 * 24 * 24 = 1152 latents."""

    def run() -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        vq = VectorQuantizer(32, 8, update=update, dead_code_steps=2).train()
        outputs = []
        for step in range(4):
            z = latents(2 * 24 * 24, 8, seed=step).view(2, 24, 24, 8).permute(0, 3, 1, 2)
            out = vq(z.contiguous())
            outputs += [out.indices, out.loss.detach(), out.quantized.detach()]
        tensors = dict(vq.named_parameters()) | dict(vq.named_buffers())
        return outputs, {k: v.detach().clone() for k, v in tensors.items()}

    blocked_out, blocked_state = run()
    monkeypatch.setattr(quantizer, "NEAREST_BLOCK_ROWS", 10**9)
    plain_out, plain_state = run()
    for a, b in zip(blocked_out, plain_out, strict=True):
        assert torch.equal(a, b)
    assert blocked_state.keys() == plain_state.keys()
    for key in blocked_state:
        assert torch.equal(blocked_state[key], plain_state[key]), key
