"""On a CUDA GPU: a training stage in bf16-mixed and channels_last, the samplers, and encoding
that agrees with the CPU. Skipped without one (benchmarks/gpu_check.sh runs them on a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny import TINY_CONFIG, assert_codes_agree

from brainvq.app.cli import main
from brainvq.inference.sampling import sample
from brainvq.io.bundle import load_vqvae
from brainvq.models.pixelcnn import GatedPixelCNN, PixelCNNConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_a_stage_trains_in_bf16_channels_last_on_the_gpu(tmp_path: Path) -> None:
    run = tmp_path / "gpu"
    flags = ["--accelerator", "gpu", "--precision", "bf16-mixed", "--epochs", "2"]
    assert (
        main(
            [
                "train",
                "vqvae",
                "--data",
                "demo",
                "--config",
                str(TINY_CONFIG),
                "--out",
                str(run),
                *flags,
            ]
        )
        == 0
    )
    bundle = load_vqvae(run)
    assert bundle.meta["precision"] == "bf16-mixed" and bundle.meta["train_config"]["channels_last"]
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["vqvae"]
    assert 0 < metrics["ssim"] <= 1 and metrics["codes_used"] >= 2
    x = torch.rand(4, 1, 32, 32)
    model = bundle.model
    on_gpu = model.to("cuda").encode(x.to("cuda")).cpu()
    assert_codes_agree(on_gpu.numpy(), model.to("cpu"), x)


def test_cached_sampler_equals_naive_on_the_gpu() -> None:
    torch.manual_seed(0)
    config = PixelCNNConfig(
        codebook_size=16,
        n_levels=4,
        embed_dim=8,
        channels=16,
        n_layers=3,
        head_channels=16,
        map_size=6,
    )
    model = GatedPixelCNN(config).to("cuda")
    level = torch.tensor([0, 3, 1])
    cached = sample(model, 3, (6, 6), level=level, seed=3, sampler="cached")
    naive = sample(model, 3, (6, 6), level=level, seed=3, sampler="naive")
    assert cached.device.type == "cuda" and torch.equal(cached, naive)
