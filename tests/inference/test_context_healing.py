"""Healing in 3D context: slice k is healed given the healed slice k - 1, healing by healing;
the cached path equals the naive reference; without a slice below it is plain healing with the
same draws; and the NLL map is the teacher-forced NLL given the healed slices below."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_prior import codes_like, neighbour_model, one_thread  # noqa: F401

from brainvq.inference.code_nll import code_nll_map
from brainvq.inference.context_healing import chain_depth, heal_in_context
from brainvq.inference.healing import heal
from brainvq.inference.sampling import draw_uniforms
from brainvq.inference.sampling_options import SamplingOptions

R = 2


def volume_codes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two volumes of 3 slices (levels 1-3), rows shuffled: codes (6, 4, 4), levels, below_of."""
    codes = codes_like(6, 4, 4, seed=4).numpy()
    levels = np.array([2, 1, 3, 3, 1, 2])
    below_of = np.array([1, -1, 0, 5, -1, 4])  # volume A: rows 1, 0, 2; B: rows 4, 5, 3
    return codes, levels, below_of


def test_chain_depth_counts_the_slices_below() -> None:
    assert chain_depth(np.array([1, -1, 0, 5, -1, 4])).tolist() == [1, 0, 2, 2, 0, 1]
    with pytest.raises(ValueError, match="cycle"):
        chain_depth(np.array([1, 0]))


def test_cached_equals_naive_and_each_slice_reads_the_healed_slice_below() -> None:
    model = neighbour_model(4)
    codes, levels, below_of = volume_codes()
    runs = {
        s: heal_in_context(
            model, codes, levels, below_of, 1.5, R, options=SamplingOptions(seed=3, sampler=s)
        )
        for s in ("naive", "cached")
    }
    (healing, nll), (naive, naive_nll) = runs["cached"], runs["naive"]
    assert torch.equal(healing.codes, naive.codes)
    assert torch.equal(healing.resampled, naive.resampled)
    np.testing.assert_allclose(nll, naive_nll, atol=1e-5)
    assert 0 < healing.resampled.float().mean() < 1
    healed = healing.codes.view(6, R, 4, 4)
    uniforms = draw_uniforms(6 * R, (4, 4), 3).view(6, R, 4, 4)
    for row in (0, 2, 3):  # slices with a slice below: plain healing given it, same draws
        again = heal(
            model,
            torch.from_numpy(codes[row : row + 1]),
            1.5,
            R,
            level=int(levels[row]),
            below=healed[below_of[row]],
            uniforms=uniforms[row],
        )
        assert torch.equal(again.codes, healed[row])
        want = code_nll_map(
            model,
            np.repeat(codes[row : row + 1], R, 0),
            np.repeat(levels[row], R),
            below=healed[below_of[row]].numpy(),
        ).mean(axis=0)
        np.testing.assert_allclose(nll[row], want, atol=1e-5)


def test_without_slices_below_it_is_plain_healing_with_the_same_draws() -> None:
    model = neighbour_model(4)
    codes, levels, _ = volume_codes()
    alone = np.full(6, -1)
    healing, nll = heal_in_context(
        model, codes, levels, alone, 1.5, R, options=SamplingOptions(seed=5)
    )
    plain = heal(model, torch.from_numpy(codes), 1.5, R, level=torch.from_numpy(levels), seed=5)
    assert torch.equal(healing.codes, plain.codes)
    np.testing.assert_allclose(nll, code_nll_map(model, codes, levels), atol=1e-5)


def test_a_threshold_that_flags_nothing_keeps_every_slice() -> None:
    model = neighbour_model(4)
    codes, levels, below_of = volume_codes()
    healing, _ = heal_in_context(model, codes, levels, below_of, float("inf"), R)
    assert torch.equal(healing.codes, torch.from_numpy(codes).repeat_interleave(R, 0))
    assert not healing.resampled.any()
