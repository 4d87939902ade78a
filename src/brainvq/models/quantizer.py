"""The vector quantizer of the VQ-VAE: nearest-code lookup with a straight-through gradient.

Two ways to learn the codebook:

- ``"ema"`` (default): the codebook is a buffer, each code the exponential moving average of
  the encoder outputs assigned to it (counts with Laplace smoothing), as in van den Oord et al.
  2017, appendix A.1. Only the commitment loss reaches the encoder.
- ``"loss"``: the codebook is a parameter trained by the codebook loss ``||sg[z] - e||^2``.

Against codebook collapse, both modes initialise the codebook by k-means on the first training
batch's latents (once; a buffer records it, so a reloaded model is not re-initialised) and
re-seed codes that no latent chose for ``dead_code_steps`` training steps from a buffer of recent
encoder outputs, drawn k-means++ style far from the codes still in use.

Mixed precision and DDP: the quantizer always computes in fp32 with autocast disabled. When
``torch.distributed`` is initialised, the per-step statistics (code counts, EMA sums, usage) are
all-reduced before they are used, and k-means init and restarts are computed on rank 0 and
broadcast, so every process holds the same codebook after every step. Only ``forward`` in
training mode changes state; ``lookup``, ``embed`` and eval-mode ``forward`` never do.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

UPDATE_MODES = ("ema", "loss")
# k-means init clusters at most this many latents per code (a random subset of the batch):
# enough for good centres, and it keeps the one-off init to about a second on a CPU.
KMEANS_POINTS_PER_CODE = 16
# rows of latents scored against the codebook at once: a (512, K) block of fp32 scores fits a
# core's L2 cache at K = 512
NEAREST_BLOCK_ROWS = 512


class VQOutput(NamedTuple):
    """What the quantizer returns for a batch of latents.

    The statistics (counts, perplexity, codes_used) describe this process's batch only; under
    DDP the codebook update uses the all-reduced counts, and loggers may sync these.
    """

    quantized: Tensor  # (B, D, h, w) straight-through quantized latents, dtype of z
    indices: Tensor  # (B, h, w) int64 in [0, K)
    loss: Tensor  # scalar: codebook_loss + beta * commitment_loss (codebook_loss is 0 in ema mode)
    codebook_loss: Tensor  # scalar
    commitment_loss: Tensor  # scalar
    perplexity: Tensor  # scalar in [1, K], exp(entropy of this batch's code usage)
    codes_used: Tensor  # scalar in (0, 1], fraction of the K codes used in this batch
    counts: Tensor  # (K,) float, how many latent vectors chose each code in this batch


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _is_rank_zero() -> bool:
    return not _distributed() or dist.get_rank() == 0


def _nearest(flat: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest code (squared Euclidean distance) for each row of flat.

    flat: (N, D) float; codebook: (K, D) float. Returns (N,) int64.
    """
    # ||x - e||^2 = ||x||^2 - 2 x.e + ||e||^2, and ||x||^2 is the same for every code.
    # On a CPU, scored in blocks of rows, so that each (rows, K) block of scores is still in
    # the cache when argmin reads it: the same scores, row by row, as one (N, K) product, in
    # less time (docs/speed.md, "Speed paths"). A GPU takes them in one product, and so does
    # a trace (ONNX export): a traced loop would fix the block count to the example's batch and
    # drop the writes into `out`.
    n = flat.shape[0]
    blocked = flat.device.type == "cpu" and not torch.jit.is_tracing()
    rows = NEAREST_BLOCK_ROWS if blocked else max(n, 1)
    norms = codebook.pow(2).sum(1)[None, :]  # (1, K)
    codes_t = codebook.t()  # (D, K)
    if rows >= n:
        return torch.argmin(torch.addmm(norms, flat, codes_t, alpha=-2), 1)  # (N,)
    out = torch.empty(n, dtype=torch.long, device=flat.device)
    for start in range(0, n, rows):
        scores = torch.addmm(norms, flat[start : start + rows], codes_t, alpha=-2)  # (rows, K)
        torch.argmin(scores, 1, out=out[start : start + rows])
    return out


def _squared_distances(data: Tensor, centres: Tensor) -> Tensor:
    """data: (N, D), centres: (M, D). Returns (N, M) squared Euclidean distances, >= 0."""
    return torch.addmm(
        data.pow(2).sum(1, keepdim=True) + centres.pow(2).sum(1)[None, :],
        data,
        centres.t(),
        alpha=-2,
    ).clamp_min(0)


def _kmeans_plus_plus(data: Tensor, num: int, existing: Tensor | None = None) -> Tensor:
    """k-means++ seeding: `num` rows of data, each drawn with probability proportional to its
    squared distance from the nearest centre chosen so far (or in `existing`).

    data: (N, D); existing: (L, D) centres already in use, or None. Returns (num, D).
    Far-apart picks matter for brain slices, where the background gives thousands of identical
    latents that uniform sampling would pick over and over.
    """
    n = data.shape[0]
    chosen = torch.empty(num, dtype=torch.long, device=data.device)
    if existing is not None and existing.shape[0] > 0:
        closest = _squared_distances(data, existing).min(1).values  # (N,)
    else:
        closest = torch.ones(n, device=data.device)
    norms = data.pow(2).sum(1)  # (N,)
    for i in range(num):
        # The tiny floor turns all-zero weights (every point already a centre) into uniform.
        chosen[i] = torch.multinomial(closest + 1e-12, 1)
        centre = data[chosen[i]]  # (D,)
        distance = (norms - 2 * (data @ centre) + centre.pow(2).sum()).clamp_min(0)  # (N,)
        closest = torch.minimum(closest, distance)
    return data[chosen].clone()


def kmeans(data: Tensor, num_clusters: int, iters: int) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on the rows of data, seeded by k-means++.

    data: (N, D) float; at most KMEANS_POINTS_PER_CODE * K random rows of it are used.
    Returns centres (K, D) and cluster sizes (K,) float, scaled to N points. A cluster that
    ends up empty keeps its previous centre (a data row), so no centre is ever NaN.
    """
    n = data.shape[0]
    limit = KMEANS_POINTS_PER_CODE * num_clusters
    sample = data[torch.randperm(n, device=data.device)[:limit]] if n > limit else data
    centres = _kmeans_plus_plus(sample, num_clusters)  # (K, D)
    sizes = torch.zeros(num_clusters, device=data.device, dtype=data.dtype)
    for _ in range(iters):
        assign = _nearest(sample, centres)  # (S,)
        sizes = torch.bincount(assign, minlength=num_clusters).to(data.dtype)
        sums = torch.zeros_like(centres).index_add_(0, assign, sample)  # (K, D)
        filled = sizes > 0
        centres[filled] = sums[filled] / sizes[filled, None]
    return centres, sizes * (n / sample.shape[0])


class VectorQuantizer(nn.Module):
    """Maps each D-dim latent vector to its nearest of K codes.

    Args:
        codebook_size: K, the codebook size (>= 2).
        code_dim: D, the dimension of each code and of the encoder's latents.
        beta: weight of the commitment loss ||z - sg[e]||^2.
        update: "ema" (moving averages, the default) or "loss" (codebook loss, codebook is a
            parameter).
        decay: EMA decay of the counts and sums (ema mode).
        eps: Laplace smoothing of the EMA counts (ema mode).
        kmeans_init: initialise the codebook by k-means on the first training batch.
        kmeans_iters: Lloyd iterations of that k-means.
        dead_code_steps: re-seed a code after this many training steps without any latent
            choosing it; 0 disables restarts.
        restart_buffer: how many recent encoder outputs to keep for restarts.
        restart_noise: a restarted code is a buffered latent (drawn k-means++ style, far from
            the live codes) plus Gaussian noise of this fraction of the buffer's per-dimension
            standard deviation.
    """

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        beta: float = 0.25,
        update: str = "ema",
        decay: float = 0.99,
        eps: float = 1e-5,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_steps: int = 10,
        restart_buffer: int = 4096,
        restart_noise: float = 0.01,
    ) -> None:
        super().__init__()
        if codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
        if code_dim < 1:
            raise ValueError(f"code_dim must be >= 1, got {code_dim}")
        if update not in UPDATE_MODES:
            raise ValueError(f"update must be one of {list(UPDATE_MODES)}, got {update!r}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        if dead_code_steps < 0:
            raise ValueError(f"dead_code_steps must be >= 0, got {dead_code_steps}")
        if restart_buffer < 1:
            raise ValueError(f"restart_buffer must be >= 1, got {restart_buffer}")
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.beta = beta
        self.update = update
        self.decay = decay
        self.eps = eps
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.dead_code_steps = dead_code_steps
        self.restart_noise = restart_noise

        initial = torch.empty(codebook_size, code_dim).uniform_(
            -1.0 / codebook_size, 1.0 / codebook_size
        )
        if update == "loss":
            self.embedding = nn.Parameter(initial)
        else:
            self.register_buffer("embedding", initial)
            # The EMA statistics start consistent with the codebook (count 1, sum = code), so
            # the first update is a moderate step rather than a jump.
            self.register_buffer("ema_count", torch.ones(codebook_size))
            self.register_buffer("ema_sum", initial.clone())
        # Training steps since each code was last chosen (all ranks agree: counts are reduced).
        self.register_buffer("steps_unused", torch.zeros(codebook_size, dtype=torch.long))
        # 1 once the codebook has been initialised (k-means) and synchronised across processes.
        self.register_buffer("initialized", torch.zeros((), dtype=torch.uint8))
        # A ring buffer of recent latents for restarts: a cache, not saved (one training batch
        # of the default size refills it); the counters are plain ints to avoid device syncs.
        self.register_buffer("_recent", torch.zeros(restart_buffer, code_dim), persistent=False)
        self._recent_filled = 0
        self._recent_next = 0

    @property
    def codebook(self) -> Tensor:
        """(K, D) float: the current codes."""
        return self.embedding

    def extra_repr(self) -> str:
        return (
            f"codebook_size={self.codebook_size}, code_dim={self.code_dim}, "
            f"update={self.update!r}, beta={self.beta}, dead_code_steps={self.dead_code_steps}"
        )

    def _flatten(self, z: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
        """z: (B, D, h, w) any float dtype -> fp32 (B*h*w, D) and (B, h, w)."""
        if z.ndim != 4 or z.shape[1] != self.code_dim:
            raise ValueError(
                f"expected latents of shape (B, {self.code_dim}, h, w), got {tuple(z.shape)}"
            )
        b, _, h, w = z.shape
        return z.float().permute(0, 2, 3, 1).reshape(-1, self.code_dim), (b, h, w)  # (N, D)

    def lookup(self, z: Tensor) -> Tensor:
        """Nearest-code indices; never changes any state (train or eval mode).

        z: (B, D, h, w) float. Returns (B, h, w) int64 in [0, K).
        """
        with torch.no_grad(), torch.autocast(device_type=z.device.type, enabled=False):
            flat, shape = self._flatten(z)  # (B*h*w, D)
            return _nearest(flat, self.embedding.float()).view(shape)

    def embed(self, indices: Tensor) -> Tensor:
        """The codes of a code map.

        indices: (B, h, w) integer in [0, K). Returns (B, D, h, w) float.
        """
        if indices.ndim != 3 or indices.dtype.is_floating_point:
            raise ValueError(
                f"expected indices as a (B, h, w) integer tensor, got {tuple(indices.shape)} "
                f"{indices.dtype}"
            )
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.codebook_size):
            raise ValueError(
                f"indices must be in [0, {self.codebook_size}), got values in "
                f"[{int(indices.min())}, {int(indices.max())}]"
            )
        return self.embedding[indices.long()].permute(0, 3, 1, 2)  # (B, D, h, w)

    def forward(self, z: Tensor) -> VQOutput:
        """Quantize z; in training mode also update the codebook (EMA, init, restarts).

        z: (B, D, h, w) float, any dtype (computed in fp32). Returns a VQOutput whose
        `quantized` has z's dtype and passes gradients straight through to z.
        """
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat, (b, h, w) = self._flatten(z)  # (N, D), N = B*h*w
            if self.training:
                self._initialise_once(flat.detach())
            indices = _nearest(flat.detach(), self.embedding.detach().float())  # (N,)
            counts = torch.bincount(indices, minlength=self.codebook_size).float()  # (K,)
            # The codes are gathered before this step's update, so each is the nearest code of
            # the codebook it was chosen from.
            codes = self.embedding.float()[indices]  # (N, D)
            if self.training:
                self._training_update(flat.detach(), indices, counts)
            commitment_loss = F.mse_loss(flat, codes.detach())
            if self.update == "loss":
                codebook_loss = F.mse_loss(codes, flat.detach())
            else:
                codebook_loss = torch.zeros((), device=z.device)
            loss = codebook_loss + self.beta * commitment_loss
            # Straight-through: the value is exactly `codes` (flat - sg[flat] is exactly 0) and
            # the gradient w.r.t. flat is the identity.
            quantized = codes.detach() + (flat - flat.detach())  # (N, D)
            quantized = quantized.view(b, h, w, self.code_dim).permute(0, 3, 1, 2)  # (B, D, h, w)
            probs = counts / counts.sum()
            perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-10))).sum())
            codes_used = (counts > 0).float().mean()
        return VQOutput(
            quantized=quantized.to(z.dtype),
            indices=indices.view(b, h, w),
            loss=loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            perplexity=perplexity,
            codes_used=codes_used,
            counts=counts,
        )

    @torch.no_grad()
    def _initialise_once(self, flat: Tensor) -> None:
        """k-means init on rank 0 (if enabled), then the same codebook on every process."""
        if bool(self.initialized):
            return
        if self.kmeans_init and _is_rank_zero():
            centres, sizes = kmeans(flat, self.codebook_size, self.kmeans_iters)
            self.embedding.data.copy_(centres)
            if self.update == "ema":
                self.ema_count.copy_(sizes.clamp_min(1.0))
                self.ema_sum.copy_(centres * self.ema_count[:, None])
        self._broadcast_codebook()
        self.initialized.fill_(1)

    @torch.no_grad()
    def _training_update(self, flat: Tensor, indices: Tensor, counts: Tensor) -> None:
        """One training step of codebook bookkeeping: EMA, usage, restarts.

        flat: (N, D) fp32 detached latents; indices: (N,) int64; counts: (K,) float.
        """
        k = self.codebook_size
        need_sums = self.update == "ema"
        stats = counts[:, None]  # (K, 1)
        if need_sums:
            sums = torch.zeros(k, self.code_dim, device=flat.device).index_add_(0, indices, flat)
            stats = torch.cat([stats, sums], dim=1)  # (K, 1 + D)
        if _distributed():
            stats = stats.clone()
            dist.all_reduce(stats, op=dist.ReduceOp.SUM)
        total_counts = stats[:, 0]  # (K,)
        used = total_counts > 0

        if need_sums:
            self.ema_count.mul_(self.decay).add_(total_counts, alpha=1 - self.decay)
            self.ema_sum.mul_(self.decay).add_(stats[:, 1:], alpha=1 - self.decay)
            n = self.ema_count.sum()
            smoothed = (self.ema_count + self.eps) / (n + k * self.eps) * n  # (K,)
            # Only codes chosen this step move: an unused code stays where it is until a latent
            # picks it or it is restarted, rather than drifting with the smoothing term.
            updated = self.ema_sum / smoothed[:, None]  # (K, D)
            self.embedding.copy_(torch.where(used[:, None], updated, self.embedding))

        self.steps_unused.add_(1).masked_fill_(used, 0)
        if self.dead_code_steps > 0:
            if _is_rank_zero():  # only rank 0 draws restarts
                self._remember(flat)
            dead = self.steps_unused >= self.dead_code_steps
            # `dead` is identical on every rank (it derives from reduced counts), so every rank
            # takes this branch together and the broadcast inside cannot deadlock.
            if bool(dead.any()):
                self._restart(dead)

    @torch.no_grad()
    def _remember(self, flat: Tensor) -> None:
        """Push a random sample of this batch's latents into the ring buffer of recent ones."""
        capacity = self._recent.shape[0]
        take = min(capacity, flat.shape[0])
        sample = flat[torch.randperm(flat.shape[0], device=flat.device)[:take]]  # (take, D)
        positions = (torch.arange(take, device=flat.device) + self._recent_next) % capacity
        self._recent[positions] = sample
        self._recent_next = (self._recent_next + take) % capacity
        self._recent_filled = min(capacity, self._recent_filled + take)

    @torch.no_grad()
    def _restart(self, dead: Tensor) -> None:
        """Re-seed the dead codes from recent latents (on rank 0) and share them."""
        dead_idx = dead.nonzero().squeeze(1)  # (M,)
        if _is_rank_zero():
            pool = self._recent[: self._recent_filled]  # (R, D)
            live = self.embedding.detach()[~dead].float()  # (K - M, D)
            seeds = _kmeans_plus_plus(pool, dead_idx.numel(), existing=live)  # (M, D)
            noise = torch.randn_like(seeds) * pool.std(0, correction=0)
            fresh = seeds + self.restart_noise * noise  # (M, D)
            self.embedding.data[dead_idx] = fresh
            if self.update == "ema":
                self.ema_count[dead_idx] = 1.0
                self.ema_sum[dead_idx] = fresh
        self._broadcast_codebook()
        self.steps_unused[dead_idx] = 0

    def _broadcast_codebook(self) -> None:
        """Give every process rank 0's codebook (and EMA statistics)."""
        if not _distributed():
            return
        dist.broadcast(self.embedding.data, src=0)
        if self.update == "ema":
            dist.broadcast(self.ema_count, src=0)
            dist.broadcast(self.ema_sum, src=0)
