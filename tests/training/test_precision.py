"""Precision "auto": what it resolves to, and that a run records the precision it used."""

from __future__ import annotations

import pytest
import torch

from brainvq.run_config import TrainConfig
from brainvq.training.trainer import resolve_precision


@pytest.mark.parametrize("precision", ["32", "16-mixed", "bf16-mixed"])
def test_explicit_precision_is_kept(precision: str) -> None:
    assert resolve_precision(TrainConfig(precision=precision, accelerator="cpu")) == precision


def test_auto_on_mps_is_full_precision() -> None:
    assert resolve_precision(TrainConfig(precision="auto", accelerator="mps")) == "32"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_on_gpu_is_mixed() -> None:
    assert resolve_precision(TrainConfig(precision="auto", accelerator="gpu")) in (
        "bf16-mixed",
        "16-mixed",
    )
