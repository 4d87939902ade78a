"""Structured L1-norm pruning of the VQ-VAE: it removes about the asked share of the prunable
channels, keeps the code, removes the weakest channels (dead ones without changing the output),
fine-tunes with a frozen codebook, and `brainvq prune` writes a run whose codes the source
run's prior still scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny import TINY_CONFIG
from torch.utils.data import DataLoader, TensorDataset

from brainvq.app.cli import main
from brainvq.app.prune import prune_run
from brainvq.config import to_dict
from brainvq.io.bundle import load_prior, load_vqvae
from brainvq.models.vqvae import VQVAE, VQVAEConfig
from brainvq.run import RunLayout, load_run, read_json
from brainvq.run_config import TrainConfig
from brainvq.training.pruning import (
    FrozenCodebookModule,
    channel_plan,
    kept_width,
    model_cost,
    prune_vqvae,
)

CONFIG = VQVAEConfig(
    image_size=32, channels=(8, 16), res_blocks=2, res_channels=8, code_dim=8, codebook_size=16
)


def images(n: int = 6, seed: int = 0) -> torch.Tensor:
    """Smooth random images: (n, 1, 32, 32) float in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 1, 8, 8, generator=g), size=32, mode="bilinear")


def model_with_codebook(config: VQVAEConfig = CONFIG) -> VQVAE:
    """Random weights and a k-means codebook (one training-mode forward pass)."""
    torch.manual_seed(0)
    model = VQVAE(config)
    with torch.no_grad():
        model.train()(images(8))
    return model.eval()


@pytest.mark.parametrize("amount", [0.25, 0.5, 0.75])
def test_pruning_removes_about_the_amount_and_keeps_the_code(amount: float) -> None:
    model = model_with_codebook()
    result = prune_vqvae(model, amount)
    for group, (before, after) in result.groups.items():
        assert after == kept_width(before, amount), group
    assert result.removed_fraction == pytest.approx(amount, abs=0.02)  # widths round
    # encoder: stages 8 + 16, stream 16, two blocks 8 + 8; decoder: stream 16, 8 + 8, stage 8
    assert result.prunable_before == 56 + 40
    assert result.config.channels == tuple(kept_width(c, amount) for c in CONFIG.channels)
    assert result.config.res_channels == kept_width(8, amount)
    assert result.config.code_dim == 8 and result.config.codebook_size == 16
    for key, value in model.quantizer.state_dict().items():
        assert torch.equal(result.model.quantizer.state_dict()[key], value), key
    x = images()
    codes = result.model.encode(x)
    assert codes.shape == (6, 8, 8) and 0 <= int(codes.min()) and int(codes.max()) < 16
    assert result.model.decode_indices(codes).shape == x.shape
    before, after = model_cost(model), model_cost(result.model)
    assert after["parameters"] < before["parameters"] and after["mflops"] < before["mflops"]
    assert before["parameters"] == sum(p.numel() for p in model.parameters())


def test_pruning_nothing_changes_nothing() -> None:
    model = model_with_codebook()
    result = prune_vqvae(model, 0.0)
    assert result.config == CONFIG and result.removed_fraction == 0
    for key, value in model.state_dict().items():
        assert torch.equal(result.model.state_dict()[key], value), key


def test_pruning_removes_the_weakest_channels_dead_ones_without_changing_the_output() -> None:
    """Channels whose producing filters and biases are zero carry nothing: pruning exactly that
    many from every group must remove them (their L1 norm is the smallest) and leave encode and
    decode as they were."""
    model = model_with_codebook()
    plan, widths = channel_plan(CONFIG)
    g = torch.Generator().manual_seed(1)
    dead = {
        group: torch.randperm(width, generator=g)[: width - kept_width(width, 0.5)]
        for group, width in widths.items()
    }
    modules = dict(model.named_modules())
    with torch.no_grad():
        for prefix, layer in plan.items():
            if layer.kind == "norm" or layer.outputs is None:
                continue
            module, channels = modules[prefix], dead[layer.outputs]
            if layer.kind == "conv":
                module.weight[channels] = 0
            else:
                module.weight[:, channels] = 0
            module.bias[channels] = 0
    result = prune_vqvae(model, 0.5)
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(result.model.encoder(x), model.encoder(x))
        codes = model.encode(x)
        torch.testing.assert_close(result.model.decode_indices(codes), model.decode_indices(codes))


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_pruning_slices_the_normalisation_layers(norm: str) -> None:
    config = VQVAEConfig(**{**CONFIG.__dict__, "norm": norm})
    model = model_with_codebook(config)
    result = prune_vqvae(model, 0.5)
    norms = [
        m
        for m in result.model.modules()
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm))
    ]
    assert norms and {n.weight.shape[0] for n in norms} == {4, 8}
    x = images()
    assert torch.isfinite(result.model.decode_indices(result.model.encode(x))).all()


@pytest.mark.parametrize("amount", [-0.1, 1.0, 1.5, True, "0.3"])
def test_pruning_refuses_bad_amounts(amount) -> None:
    with pytest.raises(ValueError, match=r"amount: expected a number in \[0, 1\)"):
        prune_vqvae(model_with_codebook(), amount)


def test_the_plan_covers_every_layer_with_weights() -> None:
    plan, _ = channel_plan(CONFIG)
    model = VQVAE(CONFIG)
    modules = dict(model.named_modules())
    assert set(plan) <= set(modules)
    convs = {
        name
        for name, m in modules.items()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    }
    assert convs == {p for p, layer in plan.items() if layer.kind != "norm"}


def test_fine_tuning_keeps_the_codebook_and_trains_the_rest(tmp_path: Path) -> None:
    model = prune_vqvae(model_with_codebook(), 0.5).model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    module = FrozenCodebookModule(model, TrainConfig(warmup_steps=0, lr=1e-2), total_steps=4)
    trainer = L.Trainer(
        max_steps=4,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    x = images(8)
    trainer.fit(
        module, DataLoader(TensorDataset(x, torch.zeros(8, dtype=torch.long)), batch_size=4)
    )
    after = module.model.state_dict()
    for key, value in before.items():
        if key.startswith("quantizer."):
            assert torch.equal(after[key], value), key
    assert not torch.equal(after["encoder.layers.0.weight"], before["encoder.layers.0.weight"])


def test_distillation_adds_the_latent_mse_to_the_source_model() -> None:
    """With the source model as teacher, the loss gains distill_weight x MSE(pruned latents,
    source latents), computed here by hand; the teacher is not part of the module's state."""
    source = model_with_codebook()
    pruned = prune_vqvae(source, 0.5).model
    x = images(4, seed=3)
    cfg = TrainConfig(warmup_steps=0, channels_last=False)
    plain = FrozenCodebookModule(pruned, cfg).eval()
    taught = FrozenCodebookModule(pruned, cfg, teacher=source, distill_weight=2.0).eval()
    with torch.no_grad():
        base, _, _ = plain.losses(x)
        losses, _, _ = taught.losses(x)
        expected = F.mse_loss(pruned.encoder(x), source.encoder(x))
    assert losses["distill"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert expected.item() > 0
    assert losses["loss"].item() == pytest.approx(
        base["loss"].item() + 2.0 * expected.item(), rel=1e-5
    )
    assert "distill" not in base
    assert not any(k.startswith("_teacher") or "teacher" in k for k in taught.state_dict())
    other = model_with_codebook(VQVAEConfig(**{**to_dict(CONFIG), "code_dim": 4}))
    with pytest.raises(ValueError, match="teacher: expected the source model"):
        FrozenCodebookModule(pruned, cfg, teacher=other)
    with pytest.raises(ValueError, match="distill_weight"):
        FrozenCodebookModule(pruned, cfg, teacher=source, distill_weight=-1.0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained by `brainvq train vqvae` (12 epochs: SSIM ~0.55, so that pruning has
    something to lose) then `brainvq train prior` (one epoch)."""
    run = tmp_path_factory.mktemp("run") / "tiny"
    train = ["train", "vqvae", "--data", "demo", "--config", str(TINY_CONFIG), "--out", str(run)]
    train += ["--epochs", "12", "--lr", "0.01"]
    assert main(train) == 0
    assert main(["train", "prior", "--run", str(run)]) == 0
    return run


def test_prune_writes_a_run_whose_codes_the_prior_still_scores(tiny_run: Path, tmp_path: Path):
    # six seconds of fine-tuning at 0.3x the run's lr (the default 0.1x needs the minutes of a
    # real run); the untuned model is the pruned one as it is (0 minutes)
    out = tmp_path / "pruned"
    metrics = prune_run(tiny_run, 0.5, 0.1, out, lr=0.003)
    untuned = prune_run(tiny_run, 0.5, 0, tmp_path / "untuned")
    source_ssim = read_json(RunLayout(tiny_run).metrics)["vqvae"]["ssim"]
    source = load_vqvae(tiny_run)
    pruned = load_vqvae(out)
    assert pruned.config == load_run(out).vqvae
    assert pruned.config.channels == (4, 8) and pruned.config.res_channels == 4
    assert torch.equal(pruned.model.quantizer.codebook, source.model.quantizer.codebook)
    assert pruned.meta["pruned_from"].endswith("VQVAE_Model") and pruned.meta["amount"] == 0.5
    prior, copied = load_prior(tiny_run), load_prior(out)
    for key, value in prior.model.state_dict().items():
        assert torch.equal(copied.model.state_dict()[key], value), key
    p, v, u = metrics["prune"], metrics["vqvae"], untuned["prune"]
    assert p["kept_channels"] == p["prunable_channels"] // 2
    assert p["parameters_after"] < p["parameters_before"]
    print(
        f"SSIM: source {source_ssim:.3f}, pruned {untuned['vqvae']['ssim']:.3f}, fine-tuned "
        f"{v['ssim']:.3f}; codes kept: pruned {u['codes_identical_val']:.3f}, fine-tuned "
        f"{p['codes_identical_val']:.3f}; prior NLL bits: source codes "
        f"{p['source_code_nll_bits_val']:.3f}, pruned {u['code_nll_bits_val']:.3f}, fine-tuned "
        f"{p['code_nll_bits_val']:.3f}"
    )
    # halving every width loses much of the reconstruction and of the code assignment (on a
    # 2-core EPYC: SSIM ~0.56 -> 0.04 in bf16, 0.29 in fp32; codes kept 7% and 27%); the
    # fine-tuning, distilled towards the source encoder, brings both back (SSIM 0.51 / 0.56,
    # codes kept 56-69% / 91%)
    assert source_ssim > 0.4
    assert v["ssim"] > untuned["vqvae"]["ssim"] + 0.02 and v["ssim"] > 0.6 * source_ssim
    assert p["codes_identical_val"] > u["codes_identical_val"] + 0.2
    # so the source run's prior scores the new codes about as it scores the source's: within
    # `margin` bits per code (measured: +0.03 fp32, +0.16 bf16; log2 K = 4), which the untuned
    # model's codes are not (+0.59 fp32, +1.5 bf16)
    margin = 0.4
    assert p["code_nll_bits_val"] <= p["source_code_nll_bits_val"] + margin
    assert u["code_nll_bits_val"] > u["source_code_nll_bits_val"] + margin
    assert (out / "codes" / "validate.npy").is_file() and (out / "metrics.json").is_file()
    assert load_run(out).preset.reason.startswith("brainvq prune --run")


def test_prune_cli_and_its_errors(tiny_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "p"
    argv = ["prune", "--run", str(tiny_run), "--amount", "0.3", "--finetune-minutes", "0"]
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "prunable channels" in text and "prior NLL on validation codes" in text
    assert load_vqvae(out).config.channels == (kept_width(8, 0.3), kept_width(16, 0.3))
    for args, message in (
        ([*argv, "--out", str(out)], "already holds a run"),
        ([*argv, "--out", str(tiny_run)], "is the source run"),
        (
            [
                "prune",
                "--run",
                str(tmp_path / "none"),
                "--amount",
                "0.3",
                "--finetune-minutes",
                "0",
                "--out",
                str(tmp_path / "x"),
            ],
            "not a brainvq run",
        ),
        ([*argv[:4], "1.2", *argv[5:], "--out", str(tmp_path / "y")], "amount: expected"),
        ([*argv[:6], "-1", "--out", str(tmp_path / "z")], "--finetune-minutes: expected"),
        ([*argv, "--lr", "0", "--out", str(tmp_path / "w")], "--lr: expected"),
    ):
        try:
            code = main(args)
        except SystemExit as e:  # refused while parsing the flags (brainvq.app.flags)
            code = e.code
        assert code == 2, args
        assert message in capsys.readouterr().err
    assert not (tmp_path / "y" / "config.yaml").exists()
    assert np.isfinite(load_vqvae(out).meta["finetune_lr"])


def test_a_run_without_a_prior_is_pruned_and_the_command_says_so(
    tiny_run: Path, tmp_path: Path, capsys
) -> None:
    source = tmp_path / "no_prior"
    shutil.copytree(tiny_run, source)
    shutil.rmtree(RunLayout(source).stage("prior"))
    out = tmp_path / "p"
    argv = ["prune", "--run", str(source), "--amount", "0.3", "--finetune-minutes", "0"]
    assert main([*argv, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    prior = RunLayout(source).bundle("prior")
    assert lines[0] == f"{source} has no prior ({prior}): no NLL of the new codes to report"
    assert "prunable channels" in lines[1] and len(lines) == 4  # no prior NLL line
    assert read_json(RunLayout(out).metrics)["prune"]["code_nll_bits_val"] is None


def test_a_refused_prune_leaves_its_out_usable(tiny_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pruned"
    argv = ["prune", "--run", str(tiny_run), "--amount", "0.3", "--out", str(out)]
    with pytest.raises(SystemExit) as e:
        main([*argv, "--finetune-minutes", "inf"])
    assert e.value.code == 2 and "--finetune-minutes" in capsys.readouterr().err
    for minutes, amount, lr in ((float("inf"), 0.3, None), (0.0, 0.3, float("nan"))):
        with pytest.raises(ValueError, match="--finetune-minutes|--lr"):
            prune_run(tiny_run, amount, minutes, out, lr=lr)
    assert not out.exists()
    assert main([*argv, "--finetune-minutes", "0"]) == 0  # the same --out, now valid
    assert load_run(out).vqvae.channels == (kept_width(8, 0.3), kept_width(16, 0.3))
