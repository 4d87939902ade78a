"""A prior with the neighbour: causal within its slice whatever the slice below holds, every
position of the slice below may move its logits, the row-wise NeighbourMap equals the full one,
and the config and input errors name what is wrong."""

from __future__ import annotations

import pytest
import torch
from tiny_prior import K, codes_like, neighbour_model, one_thread, tiny_model  # noqa: F401

from brainvq.config import ConfigError, from_dict
from brainvq.models.neighbour_map import NO_SLICE, NeighbourMap, no_slice_below
from brainvq.models.pixelcnn import PixelCNNConfig


def test_causal_within_the_slice_with_the_neighbour_attached() -> None:
    model = neighbour_model(4)
    h, w = 5, 6
    codes, below = codes_like(2, h, w, seed=1), codes_like(2, h, w, seed=2)
    level = torch.tensor([1, 3])
    with torch.no_grad():
        base = model(codes, level, below)
        for p in range(h * w):
            changed = codes.clone()
            changed[:, p // w, p % w] = (changed[:, p // w, p % w] + 1) % K
            diff = (model(changed, level, below) - base).abs().sum(1).flatten(1)  # (2, h * w)
            assert torch.all(diff[:, : p + 1] == 0), f"logits at or before {divmod(p, w)} moved"
            if p + 1 < h * w:
                assert diff[:, p + 1 :].max() > 1e-4
        # a change anywhere in the slice below may move any logit, the first position's too
        for p in range(h * w):
            changed = below.clone()
            changed[:, p // w, p % w] = (changed[:, p // w, p % w] + 1) % K
            diff = (model(codes, level, changed) - base).abs().sum(1)  # (2, h, w)
            i, j = divmod(p, w)
            assert diff[:, i, j].min() > 1e-5, f"the code below at {(i, j)} is not seen there"
        far = below.clone()
        far[:, -1, -1] = (far[:, -1, -1] + 1) % K
        # the neighbour's reach is 2 rows/columns: the last code below is seen near it only
        near_diff = (model(codes, level, far) - base).abs().sum(1)
        assert near_diff[:, -3:, -3:].min() > 1e-5 and torch.all(near_diff[:, :2] == 0)


def test_no_slice_below_is_a_map_of_no_slice_and_differs_from_a_real_one() -> None:
    model = neighbour_model(0)
    codes = codes_like(2, 4, 4)
    with torch.no_grad():
        none = model(codes)
        explicit = model(codes, None, no_slice_below(2, 4, 4))
        real = model(codes, None, codes_like(2, 4, 4, seed=9))
    assert torch.allclose(none, explicit, atol=1e-6)
    assert (none - real).abs().max() > 1e-3


def test_an_untrained_neighbour_map_adds_nothing() -> None:
    torch.manual_seed(0)
    plain, with_neighbour = tiny_model(3), tiny_model(3, neighbour="previous")
    with_neighbour.load_state_dict(plain.state_dict(), strict=False)
    codes, level = codes_like(2, 5, 5), torch.tensor([0, 2])
    with torch.no_grad():
        a = plain(codes, level)
        b = with_neighbour(codes, level, codes_like(2, 5, 5, seed=3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
def test_row_features_equal_the_full_map_at_every_row(layers: int) -> None:
    torch.manual_seed(layers)
    net = NeighbourMap(K, 4, 6, layers, 5)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
        below = codes_like(3, 7, 5)
        below[1] = NO_SLICE
        full = net(below)  # (3, 5, 7, 5)
        r = net.reach
        for i in range(7):
            rows = torch.arange(i - r, i + r + 1)
            inside = (rows >= 0) & (rows < 7)
            window = below[:, rows.clamp(0, 6)]  # (3, 2r + 1, 5)
            window[:, ~inside] = 3  # whatever lies outside the map must not matter
            got = net.row(window, inside.expand(3, -1))
            assert torch.allclose(got, full[:, :, i], atol=1e-5), f"row {i}"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"neighbour": "next"}, "neighbour"),
        ({"neighbour_channels": 0}, "neighbour_channels"),
        ({"neighbour_layers": -1}, "neighbour_layers"),
        ({"neighbour_dropout": 1.0}, "neighbour_dropout"),
        ({"neighbour_noise": -0.1}, "neighbour_noise"),
    ],
)
def test_config_errors_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key}:"):
        from_dict(PixelCNNConfig, data)


@pytest.mark.parametrize(
    ("below", "match"),
    [
        (torch.zeros(2, 4, 5, dtype=torch.int64), "below: expected a \\(2, 4, 4\\) int64"),
        (torch.zeros(2, 4, 4), "below: expected a \\(2, 4, 4\\) int64"),
        (torch.full((2, 4, 4), K, dtype=torch.int64), "below: expected codes in \\[0, 8\\)"),
        (torch.full((2, 4, 4), -2, dtype=torch.int64), "or -1 \\(no slice below\\)"),
    ],
)
def test_bad_slices_below_are_named(below: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        neighbour_model()(codes_like(2, 4, 4), None, below)


def test_a_prior_without_the_neighbour_refuses_a_slice_below() -> None:
    with pytest.raises(ValueError, match="prior.neighbour: none"):
        tiny_model()(codes_like(2, 4, 4), None, codes_like(2, 4, 4))
