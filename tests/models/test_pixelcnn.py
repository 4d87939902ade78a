"""GatedPixelCNN: causal masks in every stack, no blind spot (where a plain masked PixelCNN has
one), slice-level conditioning, bits per code, a few real training steps, config and input
errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from brainvq.config import ConfigError, from_dict
from brainvq.models.pixelcnn import (
    GatedPixelCNN,
    MaskedConv2d,
    PixelCNNConfig,
    nll_bits_per_code,
)

K = 8


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are too small to gain from threads, and on a shared machine an OpenMP
    barrier waiting for a descheduled thread makes each op up to 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides: object) -> PixelCNNConfig:
    """A prior small enough to run dozens of forward passes per second."""
    fields: dict[str, object] = dict(
        codebook_size=K,
        embed_dim=8,
        channels=16,
        n_layers=3,
        kernel_size=3,
        first_kernel=3,
        head_channels=16,
    )
    fields.update(overrides)
    return PixelCNNConfig(**fields)


def random_codes(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """(b, h, w) int64 in [0, K)."""
    return torch.randint(0, K, (b, h, w), generator=torch.Generator().manual_seed(seed))


def response(model: nn.Module, codes: torch.Tensor, pos: tuple[int, int], level=None):
    """|logits(codes with pos changed) - logits(codes)| summed over classes: (B, h, w)."""
    changed = codes.clone()
    changed[:, pos[0], pos[1]] = (changed[:, pos[0], pos[1]] + 1) % K
    with torch.no_grad():
        args = () if level is None else (level,)
        return (model(changed, *args) - model(codes, *args)).abs().sum(1)


class PlainMaskedPixelCNN(nn.Module):
    """The original PixelCNN: a stack of k x k masked convolutions (A, then B), which is known
    to have a blind spot above and to the right of each position."""

    def __init__(self, n_layers: int, channels: int = 16) -> None:
        super().__init__()
        self.embedding = nn.Embedding(K, channels)
        convs = [MaskedConv2d(channels, channels, 3, "A")]
        convs += [MaskedConv2d(channels, channels, 3, "B") for _ in range(n_layers - 1)]
        self.convs = nn.ModuleList(convs)
        self.head = nn.Conv2d(channels, K, 1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = self.embedding(codes).permute(0, 3, 1, 2)  # (B, C, h, w)
        for conv in self.convs:
            x = torch.tanh(conv(x))
        return self.head(x)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(n_layers=1),
        dict(n_layers=3, first_kernel=5),
        dict(n_layers=2, kernel_size=5),
        dict(n_layers=2, n_levels=4),
        dict(n_layers=3, kernel_size=5, first_kernel=7, n_levels=4),
    ],
    ids=["1layer", "3layers-fk5", "2layers-k5", "level", "level-k5-fk7"],
)
def test_logits_depend_only_on_earlier_positions(overrides: dict[str, int]) -> None:
    torch.manual_seed(0)
    model = GatedPixelCNN(tiny(**overrides)).eval()
    h, w = 5, 6
    codes = random_codes(2, h, w)
    level = torch.tensor([1, 3]) if overrides.get("n_levels") else None
    for p in range(h * w):
        diff = response(model, codes, divmod(p, w), level).flatten(1)  # (B, h * w)
        assert torch.all(diff[:, : p + 1] == 0), f"logits at or before {divmod(p, w)} changed"
        if p + 1 < h * w:
            assert diff[:, p + 1 :].max() > 1e-4, f"nothing after {divmod(p, w)} responds"


def test_first_position_logits_ignore_the_whole_map() -> None:
    torch.manual_seed(0)
    model = GatedPixelCNN(tiny()).eval()
    with torch.no_grad():
        a = model(random_codes(1, 6, 6, seed=1))[:, :, 0, 0]
        b = model(random_codes(1, 6, 6, seed=2))[:, :, 0, 0]
    assert torch.equal(a, b)


def test_no_blind_spot_where_a_plain_masked_pixelcnn_has_one() -> None:
    # (i-1, j+2) lies in the blind spot of a stack of 3x3 masked convolutions: it is never seen,
    # however deep the stack. Two gated layers of kernel 3 already see it. Where there is no path
    # the difference is exactly 0; long paths through a random init give small ones.
    torch.manual_seed(0)
    codes = random_codes(2, 8, 8)
    i, j = 4, 3
    gated = GatedPixelCNN(tiny(n_layers=2)).eval()
    assert response(gated, codes, (i - 1, j + 2))[:, i, j].min() > 1e-6
    plain = PlainMaskedPixelCNN(n_layers=6).eval()
    assert torch.all(response(plain, codes, (i - 1, j + 2))[:, i, j] == 0)
    assert response(plain, codes, (i - 1, j + 1))[:, i, j].min() > 1e-6  # the check can see
    deep = GatedPixelCNN(tiny(n_layers=4)).eval()
    assert response(deep, codes, (i - 3, j + 4))[:, i, j].min() > 1e-6


def test_masked_conv_masks() -> None:
    a = MaskedConv2d(1, 1, 3, "A").mask[0, 0]
    b = MaskedConv2d(1, 1, 3, "B").mask[0, 0]
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    row = MaskedConv2d(1, 1, (1, 5), "B").mask[0, 0]
    assert row.tolist() == [[1, 1, 1, 0, 0]]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(mask_type="C", kernel_size=3), "mask_type"),
        (dict(mask_type="A", kernel_size=4), "kernel_size"),
    ],
)
def test_masked_conv_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MaskedConv2d(1, 1, **kwargs)


def test_output_shape_any_map_size() -> None:
    model = GatedPixelCNN(tiny())
    assert model(random_codes(3, 5, 7)).shape == (3, K, 5, 7)


def test_conditioning_changes_the_logits() -> None:
    torch.manual_seed(0)
    model = GatedPixelCNN(tiny(n_levels=4)).eval()
    codes = random_codes(1, 6, 6).expand(2, 6, 6)
    with torch.no_grad():
        logits = model(codes, torch.tensor([0, 3]))
    assert (logits[0] - logits[1]).abs().amin(dim=0).min() > 0  # every position, even (0, 0)


def test_level_effect_depends_on_the_position() -> None:
    # the level acts through a map over positions, not one bias for the whole map
    torch.manual_seed(0)
    model = GatedPixelCNN(tiny(n_levels=4)).eval()
    codes = torch.zeros(2, 8, 8, dtype=torch.int64)
    with torch.no_grad():
        cond_map = model.condition_map(torch.tensor([0, 3]), 8, 8)  # (2, Cc, 8, 8)
        effect = model(codes, torch.tensor([0, 3])).diff(dim=0)[0]  # (K, 8, 8)
    assert cond_map.shape == (2, model.config.cond_channels, 8, 8)
    assert (cond_map[0] - cond_map[1]).abs().max() > 1e-3
    # two interior positions with the same codes around them: different level effects
    assert (effect[:, 5, 4] - effect[:, 3, 2]).abs().max() > 1e-3


def test_model_without_levels_positions_or_level_maps_has_no_condition_map() -> None:
    model = GatedPixelCNN(tiny(position_frequencies=0, level_maps=False))
    assert model.condition_map(None, 4, 4) is None
    assert not any("level" in name for name, _ in model.named_parameters())


def test_a_level_map_acts_on_its_own_level_only() -> None:
    torch.manual_seed(0)
    model = GatedPixelCNN(tiny(n_levels=4, map_size=6)).eval()
    codes = random_codes(2, 6, 6)
    level = torch.tensor([1, 3])
    with torch.no_grad():
        before = model(codes, level)
        model.condition.maps[3, :, 2, 4] += 1.0  # level 3's features at one position
        after = model(codes, level)
    assert torch.equal(after[0], before[0])  # level 1: untouched
    changed = (after[1] - before[1]).abs().sum(0) > 0  # (6, 6)
    assert changed[2, 4] and not changed[:2].any() and not changed[2, :4].any()  # never before


def test_level_maps_are_resized_for_other_map_sizes() -> None:
    model = GatedPixelCNN(tiny(n_levels=2, map_size=8))
    assert model.condition.maps.shape[-2:] == (8, 8)
    assert model(random_codes(2, 5, 7), torch.tensor([0, 1])).shape == (2, K, 5, 7)


def test_init_output_bias_starts_at_the_code_histogram() -> None:
    torch.manual_seed(0)
    model = GatedPixelCNN(tiny()).eval()
    counts = torch.tensor([70, 10, 10, 5, 5, 0, 0, 0])
    model.init_output_bias(counts)
    expected = (counts + 1.0) / (counts.sum() + K)
    assert torch.allclose(model.head[3].bias.exp(), expected.float(), atol=1e-6)
    with pytest.raises(ValueError, match="code_counts"):
        model.init_output_bias(torch.ones(K + 1))


@pytest.mark.parametrize("frequencies", [0, 4])
def test_position_features_tell_positions_apart(frequencies: int) -> None:
    # two interior positions whose receptive fields hold the same codes and no padding
    torch.manual_seed(0)
    model = GatedPixelCNN(tiny(position_frequencies=frequencies)).eval()
    with torch.no_grad():
        logits = model(torch.zeros(1, 16, 16, dtype=torch.int64))
    a, b = logits[0, :, 6, 5], logits[0, :, 9, 8]
    if frequencies == 0:
        assert torch.allclose(a, b, atol=1e-6)
    else:
        assert (a - b).abs().max() > 1e-3
    other_size = model(torch.zeros(1, 5, 9, dtype=torch.int64))  # any map size
    assert other_size.shape == (1, K, 5, 9)


def test_nll_bits_per_code_hand_computed() -> None:
    # position 0: uniform over 2 codes -> 1 bit; position 1: code 0 with p = 3/4
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]]).reshape(1, 2, 1, 2)
    codes = torch.tensor([[[1, 0]]])
    expected = (1.0 + math.log2(4 / 3)) / 2
    assert nll_bits_per_code(logits, codes).item() == pytest.approx(expected, rel=1e-6)
    uniform = torch.zeros(2, 16, 3, 3)
    assert nll_bits_per_code(uniform, random_codes(2, 3, 3)).item() == pytest.approx(4.0)


def test_nll_bits_per_code_shape_error() -> None:
    with pytest.raises(ValueError, match="logits/codes"):
        nll_bits_per_code(torch.zeros(2, K, 4, 4), torch.zeros(2, 4, 5, dtype=torch.int64))


def test_training_reduces_nll() -> None:
    # code maps with a rule a causal model can learn: each row repeats the one above, shifted
    torch.manual_seed(0)
    first = random_codes(32, 1, 8, seed=3)  # (32, 1, 8)
    codes = torch.cat([first.roll(r, dims=2) for r in range(8)], dim=1)  # (32, 8, 8)
    model = GatedPixelCNN(tiny())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = nll_bits_per_code(model(codes), codes)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 2.5  # about log2(8) = 3 bits at initialisation
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"kernel_size": 4}, "kernel_size"),
        ({"first_kernel": 1}, "first_kernel"),
        ({"channels": 0}, "channels"),
        ({"n_layers": 0}, "n_layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"codebook_size": 1}, "codebook_size"),
        ({"n_levels": -1}, "n_levels"),
        ({"head_channels": 0}, "head_channels"),
        ({"embed_dim": 0}, "embed_dim"),
        ({"position_frequencies": -1}, "position_frequencies"),
        ({"cond_channels": 0}, "cond_channels"),
        ({"map_size": 0}, "map_size"),
        ({"kernel_sise": 3}, "kernel_sise"),
        ({"channels": 8.5}, "channels"),
    ],
)
def test_config_errors_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key}:"):
        from_dict(PixelCNNConfig, data)


def test_config_default_is_valid() -> None:
    from_dict(PixelCNNConfig, {}).validate()


@pytest.mark.parametrize(
    ("codes", "level", "n_levels", "match"),
    [
        (torch.zeros(2, 4, 4), None, 0, "codes: expected a \\(B, h, w\\) int64"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.int64), None, 0, "codes: expected a"),
        (torch.full((2, 4, 4), K, dtype=torch.int64), None, 0, "codes: expected values in"),
        (torch.zeros(2, 4, 4, dtype=torch.int64), None, 4, "level: this model is conditioned"),
        (torch.zeros(2, 4, 4, dtype=torch.int64), torch.tensor([0, 1]), 0, "unconditional"),
        (torch.zeros(2, 4, 4, dtype=torch.int64), torch.tensor([0, 4]), 4, "levels in \\[0, 4"),
        (torch.zeros(2, 4, 4, dtype=torch.int64), torch.tensor([0]), 4, "level: expected a \\(2"),
    ],
)
def test_forward_input_errors(codes, level, n_levels: int, match: str) -> None:
    model = GatedPixelCNN(tiny(n_levels=n_levels))
    with pytest.raises(ValueError, match=match):
        model(codes, level)
