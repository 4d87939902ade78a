"""Samplers: the cached sampler draws exactly what the naive reference draws, the temperature
limit is argmax decoding, completion keeps the given rows, inverse-CDF draws follow the softmax,
and every argument error names the argument."""

from __future__ import annotations

import pytest
import torch
from tiny_prior import K, codes_like, one_thread, tiny_model  # noqa: F401

from brainvq.inference.sampling import complete, draw_codes, sample, teacher_forced_logits
from brainvq.models.pixelcnn import GatedPixelCNN


@pytest.mark.parametrize(
    ("n_levels", "overrides", "kwargs"),
    [
        (0, {}, {}),
        (0, {"kernel_size": 5, "first_kernel": 5}, {"temperature": 0.6}),
        (0, {}, {"temperature": 1.7, "top_k": 3}),
        (4, {}, {"level": 2}),
        (4, {"first_kernel": 7}, {"level": torch.tensor([0, 3, 1]), "top_k": 5}),
        (4, {"n_layers": 2}, {"level": 1, "keep_rows": 2, "temperature": 0.8}),
        (0, {}, {"keep_rows": 4, "top_k": 2}),
        (0, {"position_frequencies": 0}, {}),
        (4, {"position_frequencies": 0}, {"level": torch.tensor([0, 3, 1])}),
        (4, {"cond_channels": 5, "kernel_size": 5}, {"level": torch.tensor([2, 2, 0])}),
        (4, {"map_size": 6, "position_frequencies": 0}, {"level": torch.tensor([3, 1, 0])}),
        (0, {"map_size": 7, "position_frequencies": 0}, {}),
    ],
    ids=[
        "plain",
        "k5-temp",
        "temp-topk",
        "level-int",
        "level-tensor-topk",
        "level-keep",
        "keep",
        "no-position",
        "level-no-position",
        "level-map-k5",
        "level-maps-only",
        "position-map-only",
    ],
)
def test_cached_equals_naive(n_levels: int, overrides: dict, kwargs: dict) -> None:
    model = tiny_model(n_levels, **overrides)
    h, w = 6, 7
    if "keep_rows" in kwargs:
        kwargs = dict(kwargs, init_codes=codes_like(3, h, w))
    naive = sample(model, 3, (h, w), sampler="naive", seed=11, **kwargs)
    cached = sample(model, 3, (h, w), sampler="cached", seed=11, **kwargs)
    assert naive.shape == (3, h, w) and naive.dtype == torch.int64
    # Equal, not close: the two samplers' logits differ by about 1e-7, and a draw can only
    # flip where its uniform falls that close to a step of the CDF (odds of ~1e-5 per test).
    assert torch.equal(naive, cached)
    assert 0 <= int(naive.min()) and int(naive.max()) < K
    if "top_k" not in kwargs:  # a trivial sampler (all zeros, one code) must not pass
        assert len(naive.unique()) > 2


def test_seed_determines_the_samples() -> None:
    model = tiny_model()
    a = sample(model, 4, (5, 5), seed=1)
    assert torch.equal(a, sample(model, 4, (5, 5), seed=1))
    assert not torch.equal(a, sample(model, 4, (5, 5), seed=2))


def greedy(model: GatedPixelCNN, n: int, h: int, w: int, level=None) -> torch.Tensor:
    """Argmax decoding, written out with full forward passes."""
    codes = torch.zeros(n, h, w, dtype=torch.int64)
    with torch.no_grad():
        for i in range(h):
            for j in range(w):
                codes[:, i, j] = model(codes, level)[:, :, i, j].argmax(1)
    return codes


@pytest.mark.parametrize("sampler", ["naive", "cached"])
def test_low_temperature_is_argmax_decoding(sampler: str) -> None:
    model = tiny_model(n_levels=3).eval()
    level = torch.tensor([0, 2])
    expected = greedy(model, 2, 5, 6, level)
    got = sample(model, 2, (5, 6), level=level, temperature=1e-6, sampler=sampler, seed=3)
    assert torch.equal(got, expected)
    top1 = sample(model, 2, (5, 6), level=level, top_k=1, sampler=sampler, seed=4)
    assert torch.equal(top1, expected)


def test_keep_rows_keeps_the_given_rows() -> None:
    model = tiny_model()
    init = codes_like(4, 6, 6)
    out = sample(model, 4, (6, 6), init_codes=init, keep_rows=3, seed=0)
    assert torch.equal(out[:, :3], init[:, :3])
    assert not torch.equal(out[:, 3:], init[:, 3:])
    everything = sample(model, 4, (6, 6), init_codes=init, keep_rows=6)
    assert torch.equal(everything, init)


def test_complete_returns_n_completions_per_map() -> None:
    model = tiny_model(n_levels=4)
    codes = codes_like(2, 6, 5)
    out = complete(model, codes, keep_rows=2, n=3, level=torch.tensor([1, 3]), seed=7)
    assert out.shape == (6, 6, 5)
    assert torch.equal(out[:, :2], codes[:, :2].repeat_interleave(3, dim=0))
    assert not torch.equal(out[0], out[1])  # each completion has its own draws
    naive = complete(
        model, codes, keep_rows=2, n=3, level=torch.tensor([1, 3]), seed=7, sampler="naive"
    )
    assert torch.equal(out, naive)
    same_level = complete(model, codes, keep_rows=2, n=3, level=1, seed=7)
    assert same_level.shape == (6, 6, 5)


def test_sampling_restores_training_mode_and_builds_no_graph() -> None:
    model = tiny_model()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen: list[tuple[bool, bool]] = []
    hook = model.layers[0].v_conv.register_forward_hook(  # both samplers call it
        lambda module, args, out: seen.append((torch.is_grad_enabled(), module.training))
    )
    try:
        for sampler in ("naive", "cached"):
            sample(model, 2, (4, 4), sampler=sampler)
            teacher_forced_logits(model, codes_like(2, 4, 4))
    finally:
        hook.remove()
    assert seen and not any(grad or training for grad, training in seen)  # eval, no autograd
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_progress_bar_gives_the_same_samples() -> None:
    model = tiny_model()
    assert torch.equal(sample(model, 2, (4, 5), progress=True), sample(model, 2, (4, 5)))


def test_draw_codes_inverse_cdf_by_hand() -> None:
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]])).expand(4, 3)
    u = torch.tensor([0.1, 0.25, 0.6, 0.999])
    assert draw_codes(logits, u, 1.0, None).tolist() == [0, 1, 2, 2]
    assert draw_codes(logits, u, 1.0, 1).tolist() == [2, 2, 2, 2]
    # top 2 of (0.2, 0.3, 0.5) renormalised: (0, 0.375, 0.625)
    assert draw_codes(logits, u, 1.0, 2).tolist() == [1, 1, 2, 2]
    zero_first = torch.tensor([[float("-inf"), 0.0]])
    assert draw_codes(zero_first, torch.tensor([0.0]), 1.0, None).tolist() == [1]


def test_draw_codes_frequencies_follow_softmax() -> None:
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0]).expand(20000, 4)
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for temperature in (1.0, 0.5):
        drawn = draw_codes(logits, u, temperature, None)
        freq = torch.bincount(drawn, minlength=4).double() / len(drawn)
        expected = torch.softmax(logits[0].double() / temperature, 0)
        assert torch.allclose(freq, expected, atol=0.015)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n=0), "^n:"),
        (dict(shape=(0, 4)), "^shape:"),
        (dict(temperature=0.0), "^temperature:"),
        (dict(temperature=-1.0), "^temperature:"),
        (dict(temperature=float("inf")), "^temperature: expected a finite number > 0, got inf"),
        (dict(temperature=float("nan")), "^temperature: .* got nan"),
        (dict(seed=-1), r"^seed: expected an integer seed in \[0, 4294967295\], got -1"),
        (dict(seed=2**64), "^seed: .* got 18446744073709551616"),
        (dict(top_k=0), "^top_k:"),
        (dict(top_k=K + 1), "^top_k:"),
        (dict(keep_rows=-1), "^keep_rows:"),
        (dict(keep_rows=5, init_codes=torch.zeros(2, 4, 4, dtype=torch.int64)), "^keep_rows:"),
        (dict(keep_rows=2), "^init_codes:"),
        (dict(keep_rows=2, init_codes=torch.zeros(2, 3, 4, dtype=torch.int64)), "^init_codes:"),
        (
            dict(keep_rows=1, init_codes=torch.full((2, 4, 4), K, dtype=torch.int64)),
            "^init_codes: expected values",
        ),
        (dict(sampler="fast"), "^sampler:"),
        (dict(level=1), "^level: this model is unconditional"),
        (
            dict(uniforms=torch.rand(2, 4, 4)),
            r"^uniforms: expected a \(2, 4, 4\) float64 tensor, got \(2, 4, 4\) torch.float32",
        ),
        (
            dict(uniforms=torch.rand(2, 4, 3, dtype=torch.float64)),
            r"^uniforms: expected a \(2, 4, 4\) float64 tensor, got \(2, 4, 3\) torch.float64",
        ),
    ],
)
def test_sample_argument_errors(kwargs: dict, match: str) -> None:
    args = dict(n=2, shape=(4, 4))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sample(tiny_model(), args.pop("n"), args.pop("shape"), **args)


@pytest.mark.parametrize(
    ("level", "match"),
    [
        (None, "^level: this model is conditioned"),
        (4, "^level: expected a level in \\[0, 4\\)"),
        (-1, "^level: expected a level"),
        (torch.tensor([0, 4]), "^level: expected levels in \\[0, 4\\)"),
        (torch.tensor([0, 1, 2]), "^level: expected an \\(2,\\)"),
        (torch.tensor([0.0, 1.0]), "^level: expected an \\(2,\\) integer"),
    ],
)
def test_sample_cond_errors(level, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sample(tiny_model(n_levels=4), 2, (4, 4), level=level)


def test_complete_argument_errors() -> None:
    model = tiny_model(n_levels=4)
    with pytest.raises(ValueError, match="^codes:"):
        complete(model, torch.zeros(4, 4, dtype=torch.int64), 1, 2, level=1)
    with pytest.raises(ValueError, match="^n:"):
        complete(model, codes_like(2, 4, 4), 1, 0, level=1)
    with pytest.raises(ValueError, match="^level: expected an int or a \\(2,\\)"):
        complete(model, codes_like(2, 4, 4), 1, 2, level=torch.tensor([1, 2, 3]))


@pytest.mark.parametrize(
    ("n_levels", "overrides"),
    [(0, {}), (3, {"kernel_size": 5, "first_kernel": 7, "n_layers": 2})],
)
def test_cached_logits_equal_the_full_forward(n_levels: int, overrides: dict) -> None:
    model = tiny_model(n_levels, **overrides).eval()
    codes = codes_like(2, 5, 6)
    level = torch.tensor([0, 2]) if n_levels else None
    with torch.no_grad():
        full = model(codes, level)
    cached = teacher_forced_logits(model, codes, level)
    assert torch.allclose(cached, full, atol=1e-5, rtol=1e-5)
