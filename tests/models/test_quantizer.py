"""VectorQuantizer: straight-through gradients, EMA and loss updates, k-means init, dead-code
restarts, state that never changes outside a training forward, fp32 under autocast, and the
same codebook on every DDP process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from brainvq.models.quantizer import VectorQuantizer, kmeans

pytestmark = pytest.mark.usefixtures("single_thread")


def latents(b: int, d: int, h: int = 4, w: int = 4, seed: int = 0, offset: float = 0.0):
    """(b, d, h, w) standard normal latents shifted by offset."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, h, w, generator=g) + offset


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (persistent or not), cloned."""
    tensors = dict(module.named_parameters()) | dict(module.named_buffers())
    return {k: v.detach().clone() for k, v in tensors.items()}


def assert_same_state(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), f"{key} changed"


@pytest.mark.parametrize("update", ["ema", "loss"])
def test_forward_shapes_and_statistics(update: str) -> None:
    vq = VectorQuantizer(16, 8, update=update).eval()
    z = latents(3, 8, 4, 5)
    out = vq(z)
    assert out.quantized.shape == (3, 8, 4, 5)
    assert out.indices.shape == (3, 4, 5) and out.indices.dtype == torch.int64
    assert out.counts.shape == (16,) and out.counts.sum() == 3 * 4 * 5
    assert torch.equal(out.counts, torch.bincount(out.indices.flatten(), minlength=16).float())
    assert 1.0 <= float(out.perplexity) <= 16.0
    assert float(out.codes_used) == pytest.approx(float((out.counts > 0).sum()) / 16)
    # The quantized latents are exactly the chosen codes, and those are the nearest ones.
    assert torch.equal(out.quantized, vq.embed(out.indices))
    assert torch.equal(out.indices, vq.lookup(z))
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8)  # (60, 8)
    assert torch.equal(out.indices.flatten(), torch.cdist(flat, vq.codebook).argmin(1))
    if update == "ema":
        assert float(out.codebook_loss) == 0.0
    else:
        assert float(out.codebook_loss.detach()) > 0.0
    assert torch.allclose(out.loss, out.codebook_loss + 0.25 * out.commitment_loss)


@pytest.mark.parametrize("update", ["ema", "loss"])
def test_training_forward_returns_the_codes_it_chose(update: str) -> None:
    vq = VectorQuantizer(16, 8, update=update, kmeans_init=False, dead_code_steps=1).train()
    with torch.no_grad():
        vq.embedding.data[8:] = 100.0  # never chosen, so restarted in this very step
    z = latents(3, 8, 4, 5)
    before = vq.codebook.detach().clone()
    out = vq(z)
    assert not torch.equal(vq.codebook.detach(), before)  # EMA moved or restarts re-seeded codes
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8)  # (60, 8)
    assert torch.equal(out.indices.flatten(), torch.cdist(flat, before).argmin(1))
    assert torch.equal(out.quantized, before[out.indices].permute(0, 3, 1, 2))


def test_straight_through_gradient() -> None:
    vq = VectorQuantizer(16, 8, update="ema")
    z = latents(2, 8).requires_grad_(True)
    weights = torch.randn(2, 8, 4, 4)
    (vq(z).quantized * weights).sum().backward()
    assert torch.equal(z.grad, weights)


def test_loss_mode_trains_the_codebook_by_gradient() -> None:
    vq = VectorQuantizer(16, 8, update="loss", dead_code_steps=0)
    assert isinstance(vq.embedding, torch.nn.Parameter)
    out = vq(latents(2, 8))
    out.loss.backward()
    assert vq.embedding.grad is not None and vq.embedding.grad.abs().sum() > 0


def test_ema_moves_only_the_codes_that_were_used() -> None:
    vq = VectorQuantizer(16, 4, update="ema", kmeans_init=False, dead_code_steps=0)
    with torch.no_grad():
        vq.embedding.copy_(torch.arange(16.0)[:, None].expand(16, 4))  # code k = (k, k, k, k)
        vq.ema_sum.copy_(vq.embedding)
    # Latents near codes 2 and 9 only.
    z = torch.cat([torch.full((1, 4, 2, 2), 2.3), torch.full((1, 4, 2, 2), 8.8)])
    before = vq.codebook.clone()
    out = vq.train()(z)
    used = out.counts > 0
    assert used.nonzero().flatten().tolist() == [2, 9]
    assert torch.equal(vq.codebook[~used], before[~used])
    assert not torch.equal(vq.codebook[used], before[used])
    # Each used code moved towards the mean of its latents.
    assert 2.0 < float(vq.codebook[2, 0]) < 2.3
    assert 8.8 < float(vq.codebook[9, 0]) < 9.0


def test_eval_forward_lookup_and_embed_change_nothing() -> None:
    vq = VectorQuantizer(16, 8, update="ema", dead_code_steps=1)
    before = state(vq)
    vq.eval()(latents(2, 8))
    vq.train()
    vq.lookup(latents(2, 8, seed=1))
    vq.embed(torch.zeros(1, 2, 2, dtype=torch.long))
    assert_same_state(before, state(vq))
    assert int(vq.initialized) == 0


def test_kmeans_init_happens_once_and_survives_state_dict() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, update="loss", dead_code_steps=0, kmeans_iters=10)
    # Four tight, well separated clusters: every k-means centre must land on one of them.
    centres = torch.tensor([[10.0, 0.0], [-10.0, 0.0], [0.0, 10.0], [0.0, -10.0]])
    points = centres.repeat_interleave(16, 0) + 0.1 * torch.randn(64, 2)  # (64, 2)
    z = points.T.reshape(1, 2, 8, 8)
    vq.train()(z)
    assert int(vq.initialized) == 1
    distance_to_cluster = torch.cdist(vq.codebook.detach(), centres).min(1).values
    assert bool((distance_to_cluster < 1.0).all())
    initialised = vq.codebook.detach().clone()
    vq(z + 100.0)  # a second training batch far away: no second k-means (loss mode, no step)
    assert torch.equal(vq.codebook.detach(), initialised)

    reloaded = VectorQuantizer(4, 2, update="loss", dead_code_steps=0)
    reloaded.load_state_dict(vq.state_dict())
    reloaded.train()(z + 100.0)
    assert torch.equal(reloaded.codebook.detach(), initialised)


def test_kmeans_with_fewer_points_than_clusters() -> None:
    data = torch.randn(3, 2)
    centres, sizes = kmeans(data, 8, iters=3)
    assert centres.shape == (8, 2) and torch.isfinite(centres).all()
    assert float(sizes.sum()) == 3


@pytest.mark.parametrize("update", ["ema", "loss"])
def test_dead_codes_are_restarted_from_recent_latents(update: str) -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4, update=update, kmeans_init=False, dead_code_steps=3)
    with torch.no_grad():
        vq.embedding.data.zero_()
        vq.embedding.data[4:] = 100.0  # codes 4..7 are far from every latent
    far = vq.codebook.detach()[4:].clone()
    z = latents(2, 4)
    vq.train()
    for _ in range(2):
        vq(z)
    assert torch.equal(vq.codebook.detach()[4:], far), "restarted before dead_code_steps"
    assert vq.steps_unused[4:].tolist() == [2, 2, 2, 2]
    vq(z)
    restarted = vq.codebook.detach()[4:]
    assert float(restarted.abs().max()) < 10.0, "dead codes were not re-seeded near the data"
    assert vq.steps_unused[4:].tolist() == [0, 0, 0, 0]
    # A restarted code is a recent latent plus a little noise.
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)  # (32, 4)
    assert float(torch.cdist(restarted, flat).min(1).values.max()) < 0.2


def test_state_dict_round_trip_keeps_ema_statistics_and_usage() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 8, update="ema", dead_code_steps=50).train()
    for seed in range(3):
        vq(latents(2, 8, seed=seed))
    saved = vq.state_dict()
    assert {"embedding", "ema_count", "ema_sum", "steps_unused", "initialized"} <= saved.keys()
    copy = VectorQuantizer(16, 8, update="ema", dead_code_steps=50)
    copy.load_state_dict(saved)
    for key, value in saved.items():
        assert torch.equal(copy.state_dict()[key], value), key
    copy.train()
    z = latents(2, 8, seed=9)
    out_a, out_b = vq(z), copy(z)
    assert torch.equal(out_a.indices, out_b.indices)
    assert torch.equal(vq.codebook, copy.codebook)


def test_fp32_under_autocast() -> None:
    vq = VectorQuantizer(16, 8, update="loss").train()
    z = latents(2, 8)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = vq(z.to(torch.bfloat16))
    assert vq.codebook.dtype == torch.float32
    assert out.quantized.dtype == torch.bfloat16
    assert out.loss.dtype == torch.float32 and out.commitment_loss.dtype == torch.float32
    assert torch.equal(out.indices, vq.lookup(z.to(torch.bfloat16).float()))


def test_input_errors() -> None:
    vq = VectorQuantizer(16, 8)
    with pytest.raises(ValueError, match=r"\(B, 8, h, w\)"):
        vq(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 8, h, w\)"):
        vq.lookup(torch.zeros(8, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        vq.embed(torch.full((1, 2, 2), 16))
    with pytest.raises(ValueError, match="integer"):
        vq.embed(torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="codebook_size"):
        VectorQuantizer(1, 8)
    with pytest.raises(ValueError, match="update"):
        VectorQuantizer(16, 8, update="gumbel")


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(100 + rank)  # different initial codebooks, data and restart draws
        vq = VectorQuantizer(
            16, 4, update="ema", dead_code_steps=2, kmeans_init=True, restart_buffer=32
        ).train()  # the buffer holds one batch (2 * 4 * 4 latents): restarts use the latest
        centre = torch.full((4,), 5.0)
        for step in range(6):
            z = torch.randn(2, 4, 4, 4)  # (B, D, h, w)
            if step > 0:  # afterwards a narrow region: most codes die and are restarted
                z = 0.1 * z + centre[None, :, None, None]
            vq(z)
        torch.save(
            {key: value.clone() for key, value in vq.state_dict().items()},
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_ddp_processes_hold_the_same_codebook(tmp_path: Path) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs between the processes"
    # Restarts happened: most codes now sit in the narrow region the later batches came from.
    near = torch.cdist(rank0["embedding"], torch.full((1, 4), 5.0)).squeeze(1) < 1.0
    assert int(near.sum()) >= 8
