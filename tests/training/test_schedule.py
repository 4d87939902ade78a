"""The learning-rate schedule: warm-up, cosine over the steps, and over a time budget."""

from __future__ import annotations

import pytest
import torch

from brainvq.run_config import TrainConfig
from brainvq.training.schedule import warmup_cosine


def factors(cfg: TrainConfig, total: int, budget=None, steps: int = 12) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, cfg, total, budget)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_down_to_the_floor() -> None:
    cfg = TrainConfig(warmup_steps=2, min_lr_ratio=0.1)
    lr = factors(cfg, total=10)
    assert lr[0] == pytest.approx(1 / 3) and lr[1] == pytest.approx(2 / 3)
    assert lr[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lr[2:-1], lr[3:], strict=True))  # non-increasing
    assert lr[10] == pytest.approx(0.1) and lr[11] == pytest.approx(0.1)


def test_a_spent_time_budget_ends_the_cosine_early() -> None:
    cfg = TrainConfig(warmup_steps=0, min_lr_ratio=0.1)
    clock = {"used": 0.0}
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, cfg, 1000, lambda: clock["used"])
    for used, expected in ((0.0, 1.0), (0.5, 0.55), (1.0, 0.1), (3.0, 0.1)):
        clock["used"] = used
        opt.step()
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, abs=2e-3)


def test_the_clock_never_pulls_the_schedule_back() -> None:
    # the steps are further along than the clock: the steps rule
    cfg = TrainConfig(warmup_steps=0, min_lr_ratio=0.0)
    assert factors(cfg, 10, lambda: 0.0) == pytest.approx(factors(cfg, 10))
