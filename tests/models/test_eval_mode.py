"""eval_mode: models are in eval mode inside the block, and every submodule gets back the mode
it had (a part left in eval mode on purpose stays so), also when the block raises."""

from __future__ import annotations

import pytest
from torch import nn

from brainvq.models.eval_mode import eval_mode


def modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def test_eval_inside_and_each_submodule_restored_after() -> None:
    a = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.BatchNorm1d(2)).train()
    a[2].eval()  # a frozen part, as a pruned model's quantizer during fine-tuning
    b = nn.Linear(2, 2).eval()
    before = modes(a), modes(b)
    with eval_mode(a, b):
        assert not any(modes(a)) and not any(modes(b))
    assert (modes(a), modes(b)) == before == ([True, True, True, False], [False])


def test_modes_are_restored_when_the_block_raises() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train()
    with pytest.raises(RuntimeError, match="inside"), eval_mode(model):
        raise RuntimeError("inside")
    assert all(modes(model))
