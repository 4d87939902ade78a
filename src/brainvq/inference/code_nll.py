"""The prior's per-code NLL map: -log p(code | the codes before it, level, slice below) at every
position of code maps, from one teacher-forced pass (step 1 of brainvq.inference.anomaly_maps;
the code threshold of brainvq.evaluation.anomaly_calibration)."""

from __future__ import annotations

import numpy as np
import torch

from brainvq.models.eval_mode import eval_mode
from brainvq.models.pixelcnn import GatedPixelCNN

NLL_BATCH = 64


@torch.inference_mode()
def code_nll_map(
    prior: GatedPixelCNN,
    codes: np.ndarray,
    levels: np.ndarray | None,
    batch_size: int = NLL_BATCH,
    below: np.ndarray | None = None,
) -> np.ndarray:
    """-log p(code | the codes before it, level, slice below) at every position, in nats.

    codes: (N, h, w) integer in [0, K); levels: (N,) integer, or None for an unconditional prior;
    below: (N, h, w) integer in [-1, K), the code maps of the slices below (a prior with the
    neighbour; -1 or None: none). Returns (N, h, w) float32; its sum is the maps' total
    cross-entropy under the prior."""
    codes = np.asarray(codes)
    if codes.ndim != 3:
        raise ValueError(f"codes: expected (N, h, w) code maps, got shape {codes.shape}")
    if levels is not None:
        levels = np.asarray(levels)
        if levels.shape != (len(codes),) or not np.issubdtype(levels.dtype, np.integer):
            raise ValueError(
                f"levels: expected ({len(codes)},) integers, got {levels.shape} {levels.dtype}"
            )
        levels = levels.astype(np.int64)
    out = np.zeros(codes.shape, dtype=np.float32)
    with eval_mode(prior):
        for start in range(0, len(codes), batch_size):
            part = slice(start, start + batch_size)
            c = torch.from_numpy(codes[part].astype(np.int64))  # (b, h, w)
            lv = None if levels is None else torch.from_numpy(levels[part])  # (b,)
            bl = None if below is None else torch.from_numpy(np.asarray(below[part], np.int64))
            logits = prior(c, lv, bl)  # (b, K, h, w)
            nll = -torch.log_softmax(logits.float(), dim=1).gather(1, c[:, None])[:, 0]
            out[part] = nll.numpy()
    return out
