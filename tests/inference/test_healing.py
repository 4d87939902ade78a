"""Healing: the cached path heals exactly as the naive reference, a threshold that flags nothing
returns the input, one that flags everything is `sample` with the same seed, and the NLL it
compares is the prior's own given the healed prefix."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_prior import K, codes_like, one_thread, tiny_model  # noqa: F401

from brainvq.inference.healing import heal
from brainvq.inference.sampling import sample
from brainvq.models.pixelcnn import GatedPixelCNN


def teacher_forced_nll(model: GatedPixelCNN, codes: torch.Tensor, level=None) -> torch.Tensor:
    with torch.inference_mode():
        logits = model.eval()(codes, level)  # (B, K, h, w)
    return F.cross_entropy(logits, codes, reduction="none")  # (B, h, w)


def median_threshold(model: GatedPixelCNN, codes: torch.Tensor, level=None) -> float:
    """A threshold that flags about half of the input codes: healing then both keeps and
    redraws, and redrawn codes change what follows. Halfway between two NLL values, so that no
    code's NLL equals it (where the last bit of rounding would decide)."""
    values = teacher_forced_nll(model, codes, level).flatten().sort().values
    k = len(values) // 2
    return float(values[k - 1] + values[k]) / 2


CASES = [
    (0, {}, {}),
    (0, {"kernel_size": 5, "first_kernel": 5}, {"temperature": 0.7, "n_heal": 3}),
    (0, {}, {"top_k": 3, "n_heal": 2}),
    (4, {}, {"level": 2, "n_heal": 2}),
    (4, {"first_kernel": 5}, {"level": "per map", "n_heal": 3, "batch_size": 4}),
    (4, {"position_frequencies": 0}, {"level": "per map", "top_k": 5}),
]


def _kwargs(kwargs: dict, batch: int) -> dict:
    kwargs = dict(kwargs)
    if kwargs.get("level") == "per map":
        kwargs["level"] = torch.tensor([3, 0, 1, 2][:batch])
    return kwargs


@pytest.mark.parametrize(("n_levels", "overrides", "kwargs"), CASES)
def test_cached_healing_equals_the_naive_reference(
    n_levels: int, overrides: dict, kwargs: dict
) -> None:
    model = tiny_model(n_levels, **overrides)
    codes = codes_like(3, 5, 6)
    kwargs = _kwargs(kwargs, 3)
    level = kwargs.get("level")
    level_t = torch.full((3,), level) if isinstance(level, int) else level  # for the threshold only
    threshold = median_threshold(model, codes, level_t)
    naive = heal(model, codes, threshold, seed=11, sampler="naive", **kwargs)
    cached = heal(model, codes, threshold, seed=11, sampler="cached", **kwargs)
    assert torch.equal(naive.codes, cached.codes)
    assert torch.equal(naive.resampled, cached.resampled)
    torch.testing.assert_close(naive.nll, cached.nll, atol=1e-4, rtol=1e-4)
    # it did heal: some codes kept, some redrawn, and some redrawn to a different code
    assert 0 < int(cached.resampled.sum()) < cached.resampled.numel()
    inputs = codes.repeat_interleave(kwargs.get("n_heal", 1), dim=0)
    assert (cached.codes != inputs).any()
    assert torch.equal(cached.codes[~cached.resampled], inputs[~cached.resampled])
    assert torch.equal(cached.resampled, cached.nll > threshold)


def test_a_threshold_that_flags_nothing_returns_the_input_codes() -> None:
    model = tiny_model(4)
    codes = codes_like(2, 4, 5)
    level = torch.tensor([1, 3])
    for sampler in ("cached", "naive"):
        out = heal(model, codes, float("inf"), 3, level=level, seed=2, sampler=sampler)
        assert torch.equal(out.codes, codes.repeat_interleave(3, dim=0))
        assert not out.resampled.any()


def test_the_nll_it_compares_is_the_teacher_forced_nll_when_nothing_changes() -> None:
    model = tiny_model(4)
    codes = codes_like(2, 4, 5)
    level = torch.tensor([1, 3])
    out = heal(model, codes, float("inf"), level=level)
    expected = teacher_forced_nll(model, codes, level)
    torch.testing.assert_close(out.nll, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sampler", ["cached", "naive"])
def test_a_threshold_that_flags_everything_is_sampling_with_the_same_seed(sampler: str) -> None:
    model = tiny_model(4)
    codes = codes_like(2, 4, 5)
    level = torch.tensor([2, 0])
    out = heal(
        model, codes, float("-inf"), 3, level=level, temperature=0.8, seed=7, sampler=sampler
    )
    drawn = sample(
        model,
        6,
        (4, 5),
        level=level.repeat_interleave(3),
        temperature=0.8,
        seed=7,
        sampler=sampler,
    )
    assert torch.equal(out.codes, drawn)
    assert out.resampled.all()


def test_batches_change_nothing_and_healings_differ() -> None:
    model = tiny_model()
    codes = codes_like(3, 4, 4)
    threshold = median_threshold(model, codes)
    whole = heal(model, codes, threshold, 4, seed=3)
    parts = heal(model, codes, threshold, 4, seed=3, batch_size=5)  # 1 map of 3 per batch
    assert torch.equal(whole.codes, parts.codes)
    assert torch.equal(whole.resampled, parts.resampled)
    first = whole.codes.view(3, 4, 4, 4)
    assert not all(torch.equal(first[:, 0], first[:, r]) for r in range(1, 4))


def test_the_model_mode_is_restored() -> None:
    model = tiny_model().train()
    heal(model, codes_like(1, 3, 3), 1.0)
    assert model.training


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"codes": codes_like(2, 3, 3).int()}, "codes"),
        ({"codes": codes_like(2, 3, 3)[0]}, "codes"),
        ({"codes": codes_like(2, 3, 3) + K}, "codes"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": "high"}, "threshold"),
        ({"n_heal": 0}, "n_heal"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("inf")}, "temperature: .* got inf"),
        ({"seed": -5}, "seed: .* got -5"),
        ({"top_k": K + 1}, "top_k"),
        ({"sampler": "fast"}, "sampler"),
        ({"batch_size": 0}, "batch_size"),
        ({"level": 2}, "level"),  # an unconditional model
        (  # as sample() refuses them: one healing a map, so (2, 3, 3)
            {"uniforms": torch.rand(2, 3, 3)},
            r"^uniforms: expected a \(2, 3, 3\) float64 tensor, got \(2, 3, 3\) torch.float32",
        ),
        ({"n_heal": 2, "uniforms": torch.rand(2, 3, 3, dtype=torch.float64)}, r"\(4, 3, 3\)"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    args = {"model": tiny_model(), "codes": codes_like(2, 3, 3), "threshold": 1.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        heal(**args)


def test_a_conditional_model_needs_one_level_per_map() -> None:
    model = tiny_model(4)
    with pytest.raises(ValueError, match="level"):
        heal(model, codes_like(2, 3, 3), 1.0, level=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="level"):
        heal(model, codes_like(2, 3, 3), 1.0)
