"""Whole subjects: the wavefront and cached samplers draw exactly the naive reference's subjects
for the same seed, each slice is drawn given the one below, the slices below are paired by
subject and level, and bad requests are refused with the argument named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_prior import K, neighbour_model, one_thread, tiny_model  # noqa: F401

from brainvq.inference.sampling import sample
from brainvq.inference.slice_below import below_codes, below_rows
from brainvq.inference.subjects import sample_subjects


@pytest.mark.parametrize(
    ("n_levels", "overrides", "kwargs"),
    [
        (5, {}, {}),
        (5, {"neighbour_layers": 0}, {"first_level": 1, "n_slices": 3}),
        (5, {"neighbour_layers": 1, "kernel_size": 5}, {"temperature": 0.7, "top_k": 3}),
        (0, {"neighbour_layers": 3}, {"n_slices": 4}),
        (0, {"position_frequencies": 0, "level_maps": False}, {"n_slices": 3}),
    ],
    ids=["levels", "reach0-from1", "reach1-k5-topk", "no-levels-reach3", "neighbour-only"],
)
def test_wavefront_and_cached_equal_the_naive_reference(
    n_levels: int, overrides: dict, kwargs: dict
) -> None:
    model = neighbour_model(n_levels, **overrides)
    drawn = {
        s: sample_subjects(model, 2, (5, 4), sampler=s, seed=7, **kwargs)
        for s in ("naive", "cached", "wavefront")
    }
    n_slices = kwargs.get("n_slices", n_levels - kwargs.get("first_level", 0))
    assert drawn["naive"].shape == (2, n_slices, 5, 4) and drawn["naive"].dtype == torch.int64
    # equal, not close: the logits differ by float rounding only (see test_sampling)
    assert torch.equal(drawn["naive"], drawn["cached"])
    assert torch.equal(drawn["naive"], drawn["wavefront"])
    assert len(drawn["naive"].unique()) > 2
    assert not torch.equal(drawn["naive"], sample_subjects(model, 2, (5, 4), seed=8, **kwargs))


def test_each_slice_is_the_sampler_given_the_slice_below() -> None:
    model = neighbour_model(4)
    subjects = sample_subjects(model, 2, (4, 4), seed=3)  # (2, 4, 4, 4)
    g = torch.Generator().manual_seed(3)
    uniforms = torch.rand(2, 4, 4, 4, generator=g, dtype=torch.float64)
    for lv in range(4):
        below = None if lv == 0 else subjects[:, lv - 1]
        again = sample(
            model, 2, (4, 4), level=lv, below=below, uniforms=uniforms[:, lv].contiguous()
        )
        assert torch.equal(again, subjects[:, lv])


def test_a_prior_without_the_neighbour_is_refused() -> None:
    with pytest.raises(ValueError, match="prior.neighbour: none"):
        sample_subjects(tiny_model(4), 1, (4, 4))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "^n: expected an integer in \\[1"),
        ({"n_slices": 0}, "^n_slices: expected an integer in \\[1"),
        ({"first_level": 4}, "^first_level: expected a level in \\[0, 4\\)"),
        ({"first_level": 2, "n_slices": 3}, "past the prior's last level 3"),
        ({"sampler": "fast"}, "^sampler: expected one of"),
        ({"seed": -1}, "^seed:"),
        ({"temperature": 0.0}, "^temperature:"),
    ],
)
def test_bad_requests_name_the_argument(kwargs: dict, match: str) -> None:
    args = {"n": 1, **kwargs}
    n = args.pop("n")
    with pytest.raises(ValueError, match=match):
        sample_subjects(neighbour_model(4), n, (4, 4), **args)


def test_below_rows_pair_each_slice_with_its_subjects_level_below() -> None:
    subject = np.array(["b", "a", "a", "b", "a", "c"])
    level = np.array([3, 1, 0, 2, 3, 0])
    # a@1 <- a@0 (row 2); b@3 <- b@2 (row 3); a@3 has no a@2; b@2, a@0, c@0 have none
    assert below_rows(subject, level).tolist() == [3, 2, -1, -1, -1, -1]
    codes = np.arange(6)[:, None, None] * np.ones((1, 2, 2), dtype=np.int16)
    got = below_codes(codes, below_rows(subject, level))
    assert got.dtype == np.int64 and (got[0] == 3).all() and (got[2] == -1).all()
    with pytest.raises(ValueError, match="group 'a' has two slices at level 1"):
        below_rows(np.array(["a", "a"]), np.array([1, 1]))
