"""Adversarial (VQGAN-style) VQ-VAE training: the discriminator, its losses, the adaptive weight,
the frequency loss, the start step, resume, bundles, DDP and the config section."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors import safe_open
from tiny import TINY_CONFIG, train_cmd
from torch.utils.data import DataLoader, TensorDataset

from brainvq.app.cli import main
from brainvq.config import ConfigError
from brainvq.io.bundle import load_vqvae
from brainvq.models.discriminator import AdversarialConfig, PatchDiscriminator
from brainvq.models.vqvae import VQVAEConfig
from brainvq.report.build import curve_figures
from brainvq.run import RunLayout
from brainvq.run_config import TrainConfig, load_run_config
from brainvq.training.adversarial import (
    ADAPTIVE_EPS,
    adaptive_weight,
    discriminator_loss,
    generator_loss,
    log_spectrum_distance,
)
from brainvq.training.guards import NonFiniteLossError
from brainvq.training.trainer import make_trainer
from brainvq.training.vqvae_module import VQVAEModule

TINY_VQVAE = VQVAEConfig(
    image_size=32,
    channels=(8, 16),
    res_blocks=1,
    res_channels=8,
    code_dim=8,
    codebook_size=16,
    restart_buffer=64,
    dead_code_steps=5,
)
START = 3  # the start step of the training tests


def smooth_images(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 1, 32, 32) float in [0, 1] with some structure."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    return F.interpolate(x, size=32, mode="bilinear", align_corners=False)


def module(adversarial: AdversarialConfig | None, steps: int, **train) -> VQVAEModule:
    torch.manual_seed(0)
    settings = {"accelerator": "cpu", "precision": "32", "warmup_steps": 2, **train}
    cfg = TrainConfig(epochs=1, limit_train_batches=steps, log_every_n_steps=1, **settings)
    return VQVAEModule(TINY_VQVAE, cfg, total_steps=steps, adversarial=adversarial)


def fit(m: VQVAEModule, root: Path) -> L.Trainer:
    """Train `m` with brainvq's Trainer on 8 fixed batches of 4 (in order), one epoch."""
    x = smooth_images(32)
    data = TensorDataset(x, torch.zeros(len(x), dtype=torch.long))
    trainer, _ = make_trainer(
        m.train_config,
        RunLayout(root),
        stage="vqvae",
        progress_bar=False,
        manual_optimization=not m.automatic_optimization,
    )
    trainer.fit(m, DataLoader(data, batch_size=4), DataLoader(data, batch_size=16))
    return trainer


def adv(**kw) -> AdversarialConfig:
    return AdversarialConfig(**{"enabled": True, "start_step": START, "channels": 4, **kw})


def state(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- the discriminator and the losses ---------------------------------------------------------


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_patch_logits_have_the_documented_shape_and_are_fp32_under_bf16(layers: int) -> None:
    torch.manual_seed(0)
    d = PatchDiscriminator(AdversarialConfig(layers=layers, channels=4))
    d.to(memory_format=torch.channels_last)
    x = smooth_images(2).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = d(x)
    side = (32 >> layers) - 2
    assert logits.shape == (2, 1, side, side) and logits.dtype == torch.float32
    assert AdversarialConfig(layers=layers).output_size(32) == side


def test_discriminator_refuses_images_too_small_for_its_layers() -> None:
    d = PatchDiscriminator(AdversarialConfig(layers=3, channels=4))
    with pytest.raises(ValueError, match="H, W >= 24"):
        d(torch.zeros(1, 1, 16, 16))


def test_gan_losses_match_their_formulas() -> None:
    real = torch.tensor([2.0, 0.5, -1.0]).view(1, 1, 1, 3)
    fake = torch.tensor([-2.0, 0.0, 1.5]).view(1, 1, 1, 3)
    hinge_d = 0.5 * ((0 + 0.5 + 2.0) / 3 + (0 + 1.0 + 2.5) / 3)
    torch.testing.assert_close(discriminator_loss("hinge", real, fake), torch.tensor(hinge_d))
    ns_d = 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())
    torch.testing.assert_close(discriminator_loss("non_saturating", real, fake), ns_d)
    torch.testing.assert_close(generator_loss("hinge", fake), torch.tensor(0.5 / 3))
    torch.testing.assert_close(
        generator_loss("non_saturating", fake), -torch.log(torch.sigmoid(fake)).mean()
    )
    with pytest.raises(ValueError, match="loss"):
        generator_loss("wasserstein", fake)


def test_adaptive_weight_equals_a_hand_computation() -> None:
    """out = a W^T, rec = mean((out - y)^2), adv = -mean(c * out): both gradients w.r.t. W in
    closed form, then VQGAN's ratio of their norms."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 3, generator=g)
    y, c = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    w = torch.randn(2, 3, generator=g, requires_grad=True)
    out = a @ w.T  # (4, 2)
    rec, adv_loss = ((out - y) ** 2).mean(), -(c * out).mean()
    grad_rec = (2.0 / out.numel()) * (out.detach() - y).T @ a  # (2, 3)
    grad_adv = -(1.0 / out.numel()) * c.T @ a  # (2, 3)
    expected = grad_rec.norm() / (grad_adv.norm() + ADAPTIVE_EPS)
    got = adaptive_weight(rec, adv_loss, w, max_weight=1e4)
    torch.testing.assert_close(got, expected)
    assert not got.requires_grad
    (rec + got * adv_loss).backward()  # the graphs were kept for the backward pass
    torch.testing.assert_close(w.grad, grad_rec + expected * grad_adv)
    out = a @ w.T  # a fresh graph, the same W
    rec, adv_loss = ((out - y) ** 2).mean(), -(c * out).mean()
    scaled = adaptive_weight(rec, adv_loss, w, max_weight=1e4, loss_scale=2.0**16)
    torch.testing.assert_close(scaled, expected)  # the fp16 loss scale changes nothing
    clamped = adaptive_weight(((out - y) ** 2).mean(), 1e-9 * out.mean(), w, max_weight=3.0)
    assert float(clamped) == 3.0


def test_log_spectrum_distance_sees_blur_not_position() -> None:
    x = smooth_images(4, seed=1)
    assert float(log_spectrum_distance(x, x)) == 0.0
    shifted = torch.roll(x, shifts=(5, -3), dims=(2, 3))  # the same amplitudes, other phases
    assert float(log_spectrum_distance(shifted, x)) < 1e-4
    blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert float(log_spectrum_distance(blurred, x)) > 0.05
    flat = torch.full_like(x, 0.5, requires_grad=True)  # zero amplitudes: the gradient is finite
    log_spectrum_distance(flat, x).backward()
    assert torch.isfinite(flat.grad).all()


def test_frequency_weight_adds_the_frequency_loss_to_the_total() -> None:
    m = module(AdversarialConfig(frequency_weight=0.3), steps=1).eval()
    losses, x_hat, vq = m.losses(smooth_images(4))
    freq = log_spectrum_distance(x_hat, smooth_images(4))
    torch.testing.assert_close(losses["freq"], freq)
    torch.testing.assert_close(losses["loss"], losses["recon"] + 0.3 * freq + vq.loss)
    assert "freq" not in module(None, steps=1).eval().losses(smooth_images(4))[0]


# --- training: the start step ----------------------------------------------------------------


def test_before_the_start_step_the_discriminator_idles_and_the_vqvae_trains_as_without_it(
    tmp_path: Path,
) -> None:
    plain = module(None, steps=START)
    fit(plain, tmp_path / "plain")
    with_d = module(adv(), steps=START)
    d_init = state(with_d.discriminator)
    trainer = fit(with_d, tmp_path / "adversarial")
    assert with_d.adversarial_steps == START
    assert_same(state(with_d.model), state(plain.model))  # no adversarial gradient
    assert_same(state(with_d.discriminator), d_init)  # no update
    assert "train/d_loss" not in trainer.callback_metrics


def test_from_the_start_step_the_discriminator_and_the_decoder_learn_from_each_other(
    tmp_path: Path,
) -> None:
    steps = START + 2
    plain = module(None, steps=steps)
    fit(plain, tmp_path / "plain")
    with_d = module(adv(), steps=steps)
    d_init = state(with_d.discriminator)
    trainer = fit(with_d, tmp_path / "adversarial")
    d_after = state(with_d.discriminator)
    assert any(not torch.equal(d_after[k], d_init[k]) for k in d_init)
    last = f"decoder.layers.{len(with_d.model.decoder.layers) - 1}.weight"
    assert not torch.equal(state(with_d.model)[last], state(plain.model)[last])
    metrics = trainer.callback_metrics
    for key in ("train/g_adv", "train/d_loss", "train/adaptive_weight"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert float(metrics["train/adaptive_weight"]) > 0


def test_bf16_mixed_adversarial_training_is_finite(tmp_path: Path) -> None:
    m = module(adv(start_step=1, frequency_weight=0.01), steps=3, precision="bf16-mixed")
    trainer = fit(m, tmp_path)
    for key in ("train/loss", "train/g_adv", "train/d_loss", "train/freq"):
        assert torch.isfinite(trainer.callback_metrics[key]), key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_adversarial_training_on_the_gpu_is_finite(tmp_path: Path, precision: str) -> None:
    section = adv(start_step=1, frequency_weight=0.01)
    m = module(section, steps=4, precision=precision, accelerator="gpu")
    trainer = fit(m, tmp_path)
    for key in ("train/loss", "train/g_adv", "train/d_loss", "train/freq"):
        assert torch.isfinite(trainer.callback_metrics[key]), key
    assert float(trainer.callback_metrics["train/adaptive_weight"]) > 0  # no fp16 underflow


def test_a_non_finite_adversarial_loss_stops_training(tmp_path: Path) -> None:
    m = module(adv(start_step=0, lr=1e30), steps=4, lr=1e30)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step"):
        fit(m, tmp_path)


# --- the CLI: resume, bundles, DDP -------------------------------------------------------------


def adversarial_yaml(tmp_path: Path, **train) -> Path:
    """tiny.yaml with the discriminator on from step 2, and `train` in vqvae_train."""
    cfg = yaml.safe_load(TINY_CONFIG.read_text(encoding="utf-8"))
    cfg["adversarial"] = {"enabled": True, "start_step": 2, "channels": 4, "frequency_weight": 0.01}
    cfg["vqvae_train"].update(train)
    path = tmp_path / "adversarial.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_interrupted_plus_resume_equals_uninterrupted_with_the_discriminator(
    tmp_path: Path,
) -> None:
    config = adversarial_yaml(tmp_path, warmup_steps=0, min_lr_ratio=1.0, deterministic=True)
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    base = ["train", "vqvae", "--data", "demo", "--config", str(config), "--seed", "3"]
    assert main([*base, "--out", str(straight), "--epochs", "3"]) == 0
    assert main([*base, "--out", str(interrupted), "--epochs", "2"]) == 0
    resume = ["train", "vqvae", "--out", str(interrupted), "--epochs", "3", "--resume"]
    assert main([*resume, "--seed", "3"]) == 0
    a, b = (
        torch.load(run / "vqvae" / "checkpoints" / "last.ckpt", weights_only=True)
        for run in (straight, interrupted)
    )
    assert any(k.startswith("discriminator.") for k in a["state_dict"])
    assert_same(a["state_dict"], b["state_dict"])
    assert a["brainvq_adversarial_steps"] == b["brainvq_adversarial_steps"] == 18
    assert len(a["optimizer_states"]) == len(b["optimizer_states"]) == 2
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        assert opt_a["state"].keys() == opt_b["state"].keys()
        for key in opt_a["state"]:
            for name, value in opt_a["state"][key].items():
                other = opt_b["state"][key][name]
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(other))


def test_the_bundle_holds_only_the_vqvae_and_says_how_it_was_trained(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = adversarial_yaml(tmp_path)
    assert (
        main(["train", "vqvae", "--data", "demo", "--config", str(config), "--out", str(run)]) == 0
    )
    folder = run / "vqvae" / "VQVAE_Model"
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not any("discriminator" in k for k in keys)
    bundle = load_vqvae(folder)  # strict: the weights are exactly the VQ-VAE's
    assert bundle.meta["adversarial"]["enabled"] is True
    assert bundle.meta["adversarial"]["frequency_weight"] == 0.01
    history = json.loads((run / "vqvae" / "history.json").read_text(encoding="utf-8"))
    assert {"train/g_adv", "train/d_loss", "train/adaptive_weight", "train/freq"} <= set(history[0])
    csv = (
        (run / "logs" / "csv" / "vqvae" / "metrics.csv").read_text(encoding="utf-8").splitlines()[0]
    )
    assert "train/d_loss_step" in csv and "train/adaptive_weight_step" in csv
    figures = curve_figures(RunLayout(run), tmp_path / "figures")
    assert any("discriminator" in caption for _, caption in figures)


def test_plain_bundles_say_no_adversarial_and_resume_refuses_to_switch_it_on(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "plain"
    config = str(TINY_CONFIG)
    assert main(["train", "vqvae", "--data", "demo", "--config", config, "--out", str(run)]) == 0
    assert load_vqvae(run / "vqvae" / "VQVAE_Model").meta["adversarial"] is None
    capsys.readouterr()
    resumed = ["train", "vqvae", "--out", str(run), "--epochs", "2", "--resume", "--adversarial"]
    assert main(resumed) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_two_process_ddp_keeps_codebooks_and_discriminators_identical(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = train_cmd(run, "--devices", "2", "--epochs", "2", "--adversarial")
    cmd[cmd.index("--config") + 1] = str(adversarial_yaml(tmp_path))
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    meta = load_vqvae(run / "vqvae" / "VQVAE_Model").meta
    assert meta["world_size"] == 2 and meta["epochs_trained"] == 2
    # every rank all-gathers both at the end of training; the run fails if they differ
    assert meta["codebook_sync_max_diff"] == 0.0
    assert meta["discriminator_sync_max_diff"] == 0.0
    ckpt = torch.load(run / "vqvae" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["brainvq_adversarial_steps"] == 2 * 3  # 96 slices / (16 x 2 ranks) per epoch


# --- the config section ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("enabled", "yes", "expected true or false"),
        ("start_step", -1, "must be >= 0"),
        ("loss", "wasserstein", "must be one of"),
        ("weight", 0, "must be > 0"),
        ("max_adaptive_weight", 0, "must be > 0"),
        ("lr", 0, "must be > 0"),
        ("betas", [0.5], "expected two numbers"),
        ("betas", [0.5, 1.0], "expected two numbers"),
        ("layers", 0, "must be >= 1"),
        ("channels", 0, "must be >= 1"),
        ("spectral_norm", 1, "expected true or false"),
        ("frequency_weight", -0.1, "must be >= 0"),
        ("dropout", 0.1, "unknown key"),
    ],
)
def test_every_adversarial_key_is_checked(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"adversarial\.{key}: .*{message}"):
        load_run_config(None, {"adversarial": {key: value}})


def test_too_many_layers_for_the_slice_size_is_a_config_error() -> None:
    overrides = {"data": {"size": 32}, "adversarial": {"enabled": True, "layers": 4}}
    with pytest.raises(ConfigError, match=r"adversarial\.layers: .*at most 3 layers"):
        load_run_config(None, overrides)
    overrides["adversarial"]["layers"] = 3
    assert load_run_config(None, overrides).adversarial.layers == 3


def test_the_adversarial_flag_turns_the_section_on() -> None:
    from brainvq.app.commands.train import stage_overrides

    on, off = argparse.Namespace(adversarial=True), argparse.Namespace(adversarial=False)
    assert stage_overrides(on, ("vqvae",))["adversarial"] == {"enabled": True}
    assert "adversarial" not in stage_overrides(off, ("vqvae",))
    assert "adversarial" not in stage_overrides(on, ("prior",))
