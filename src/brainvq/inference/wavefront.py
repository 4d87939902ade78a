"""The wavefront sampler of whole subjects: every slice of a subject drawn at once, each a few
rows behind the slice below it.

Drawn one after the other, the 32 slices of a subject cost 32 x 1,024 sequential positions. But
the NeighbourMap's features at row i of slice l read the slice below only up to row
i + reach (reach: its 3x3 layers), so slice l may draw row i as soon as slice l - 1 has drawn
rows 0 .. i + reach. Slice l therefore runs lag = reach + 1 rows behind slice l - 1, and one
step t draws row t - lag * l of every slice l at once: h + lag * (L - 1) row steps instead of
L * h (125 instead of 1,024 for 32 slices of 32 rows, lag 3).

It is the row cache of the cached sampler (brainvq.inference.row_cache) over a buffer in which
slice l's row x sits at row x + lag * l, so that every slice works on the same buffer row:
a slice that has not started or has finished is carried along (its draws are discarded, and it
writes nothing, so its first row still finds no row above). Each row's condition is made just
before the row starts: the level's ConditionMap row and the NeighbourMap's row from the slice
below's rows around it (NeighbourMap.row). The logits are those of the full model given the
slice below (up to float rounding), so with the same uniforms it draws the naive sampler's
subjects (tested).
"""

from __future__ import annotations

import torch
from torch import Tensor

from brainvq.inference.row_cache import RowCache
from brainvq.inference.sampling import draw_codes
from brainvq.models.neighbour_map import NO_SLICE
from brainvq.models.pixelcnn import GatedPixelCNN
from brainvq.progress import Bar


class Wavefront:
    """Where each slice is at step t: slice l draws map row t - lag * l when it lies in [0, h)."""

    def __init__(self, n_slices: int, h: int, lag: int) -> None:
        self.n_slices, self.h, self.lag = n_slices, h, lag
        self.steps = h + lag * (n_slices - 1)

    def active(self, t: int) -> tuple[int, int]:
        """The slices drawing a row at step t: lo .. hi - 1."""
        lo = max(0, -(-(t - self.h + 1) // self.lag))  # the first l with t - lag * l < h
        return lo, min(self.n_slices, t // self.lag + 1)


def sample_wavefront(
    model: GatedPixelCNN,
    n: int,
    shape: tuple[int, int],
    level: Tensor | None,
    uniforms: Tensor,
    temperature: float,
    top_k: int | None,
    progress: bool = False,
) -> Tensor:
    """n subjects of L slices drawn as described in the module docstring (model in eval mode,
    inference mode; the caller checks the arguments).

    level: (L,) int64, slice l's level, or None for a prior without levels; uniforms: (n, L, h,
    w) float64 in [0, 1). Returns (n, L, h, w) int64 in [0, K)."""
    h, w = shape
    n_slices = uniforms.shape[1]
    device = model.embedding.weight.device
    neighbour = model.neighbour
    reach = neighbour.reach
    front = Wavefront(n_slices, h, reach + 1)
    # maps in the cache slice by slice (slice l of subject s at l * n + s), so that the slices
    # drawing at a step are one run of maps (RowCache.narrow)
    cache = RowCache(model, n_slices * n, h, w, None, rows=front.steps, condition_from_caller=True)
    # the ConditionMap of each slice's level, channels last: (L or 1, h, w, Cc) or None
    own = None if model.condition is None else model.condition(level, h, w).permute(0, 2, 3, 1)
    codes = torch.zeros(n_slices, n, h, w, dtype=torch.int64, device=device)
    below = torch.full((n_slices, n, h + 2 * reach, w), NO_SLICE, device=device)
    uniforms = uniforms.to(device)
    window = torch.arange(2 * reach + 1, device=device)  # (2R + 1,)
    with Bar(f"sampling {n} subjects (wavefront), steps", front.steps, progress) as bar:
        for t in range(front.steps):
            lo, hi = front.active(t)
            slices = torch.arange(lo, hi, device=device)
            rows = t - front.lag * slices  # (a,): the row each active slice draws
            # rows - R .. rows + R of the slice below, in `below`'s rows shifted down by R
            around = rows[:, None] + window  # (a, 2R + 1)
            inside = (around >= reach) & (around < h + reach)
            near = below[slices[:, None], :, around].transpose(1, 2)  # (a, n, 2R + 1, w)
            inside = inside[:, None].expand(-1, n, -1).reshape(-1, 2 * reach + 1)
            cond = neighbour.row(near.reshape(-1, 2 * reach + 1, w), inside)  # (a * n, Cc, w)
            cond = cond.transpose(1, 2)  # (a * n, w, Cc)
            if own is not None:
                own_rows = own[slices if own.shape[0] > 1 else 0, rows]  # (a, w, Cc)
                cond = cond + own_rows.repeat_interleave(n, dim=0)
            u = uniforms[:, slices, rows].transpose(0, 1).reshape(-1, w)  # (a * n, w)
            part = cache.narrow(lo * n, hi * n)
            part.start(t, cond)
            row = torch.empty(len(u), w, dtype=torch.int64, device=device)
            for j in range(w):
                row[:, j] = draw_codes(part.logits_at(j), u[:, j], temperature, top_k)
                part.set_code(j, row[:, j])
            part.finish(t, row, cond)
            drawn = row.view(hi - lo, n, w)
            codes[slices, :, rows] = drawn
            upper = slices + 1 < n_slices  # the slice above each reads its row from `below`
            below[slices[upper] + 1, :, rows[upper] + reach] = drawn[upper]
            bar.advance()
    return codes.transpose(0, 1).contiguous()  # (n, L, h, w)
