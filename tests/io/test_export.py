"""`brainvq export`: ONNX models that agree with PyTorch, int8 versions that run, and checkpoint
conversion that reads only tensors and plain data (a planted pickle never runs)."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import lightning as L
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument
from tiny import TINY_CONFIG, assert_codes_agree
from torch.utils.data import DataLoader, TensorDataset

from brainvq.app.cli import main
from brainvq.inference.codes import to_uint8
from brainvq.io.bundle import Bundle, load_prior, load_vqvae, save_bundle
from brainvq.io.checkpoint import CheckpointError, checkpoint_to_bundle
from brainvq.io.onnx import export_onnx
from brainvq.metrics import ssim
from brainvq.models.pixelcnn import GatedPixelCNN, PixelCNNConfig
from brainvq.models.vqvae import VQVAE, VQVAEConfig
from brainvq.run import prepare_run
from brainvq.run_config import TrainConfig
from brainvq.training.prior_module import PriorModule
from brainvq.training.vqvae_module import VQVAEModule

SMALL = VQVAEConfig(
    image_size=32, channels=(8, 16), res_blocks=1, res_channels=8, code_dim=8, codebook_size=16
)
TINY_PRIOR = PixelCNNConfig(codebook_size=16, embed_dim=8, channels=8, n_layers=2, head_channels=16)


def structured_images(n: int, size: int = 32) -> torch.Tensor:
    """Discs, rings, gradients and stripes: (n, 1, size, size) float in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) - 0.5  # (size, size) in [-0.5, 0.5]
    r = np.hypot(yy, xx)
    shapes = [
        (r < 0.3) * 0.9,
        ((r > 0.2) & (r < 0.35)) * 0.7 + 0.1,
        xx + 0.5,
        0.5 + 0.5 * np.sin(12 * yy),
        np.clip(1 - 2 * r, 0, 1) * (xx > -0.2),
    ]
    images = np.stack([shapes[i % len(shapes)] for i in range(n)]).astype(np.float32)
    return torch.from_numpy(images).unsqueeze(1)  # (n, 1, size, size)


def small_model() -> VQVAE:
    """The tiny VQ-VAE with random weights and a codebook spread over its latents (k-means
    init of one training-mode forward pass), so the images use many different codes."""
    torch.manual_seed(0)
    model = VQVAE(SMALL)
    with torch.no_grad():
        model.train()(structured_images(10))
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[VQVAE, Path, dict]:
    model = small_model()
    bundle = save_bundle(tmp_path_factory.mktemp("m") / "VQVAE_Model", model, SMALL, kind="vqvae")
    out = tmp_path_factory.mktemp("onnx")
    manifest = export_onnx(bundle, out, quantize="int8")
    return model, out, manifest


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_models_agree_with_pytorch_at_any_batch(exported, batch: int) -> None:
    model, out, _ = exported
    x = structured_images(batch)
    indices = session(out / "encoder.onnx").run(None, {"images": x.numpy()})[0]
    expected = model.encode(x)
    assert indices.shape == (batch, 8, 8) and indices.dtype == np.int64
    assert_codes_agree(indices, model, x)
    if batch == 5:
        assert len(np.unique(indices)) > 3, "the check is only meaningful with varied codes"
    g = torch.Generator().manual_seed(batch)
    for codes in (expected, torch.randint(0, 16, (batch, 8, 8), generator=g)):
        decoded = session(out / "decoder.onnx").run(None, {"indices": codes.numpy()})[0]
        assert decoded.shape == (batch, 1, 32, 32) and decoded.dtype == np.float32
        assert np.abs(decoded - model.decode_indices(codes).numpy()).max() < 1e-4


def test_export_json_describes_the_models(exported) -> None:
    _, out, manifest = exported
    doc = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert doc == manifest
    assert (doc["image_size"], doc["latent_size"], doc["codebook_size"]) == (32, 8, 16)
    assert doc["opset"] == 17 and "uint8 / 255" in doc["intensity"]
    assert "clamp to [0, 1]" in doc["intensity"]
    for part, dims in (
        ("encoder", [["batch", 1, 32, 32], ["batch", 8, 8]]),
        ("decoder", [["batch", 8, 8], ["batch", 1, 32, 32]]),
    ):
        graph = onnx.load(out / doc[part]["file"]).graph
        assert [graph.input[0].name, graph.output[0].name] == [
            doc[part]["input"]["name"],
            doc[part]["output"]["name"],
        ]
        assert [doc[part]["input"]["shape"], doc[part]["output"]["shape"]] == dims
        shape = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
        assert shape == dims[0]
    assert doc["encoder"]["output"]["range"] == [0, 15]
    assert doc["int8"]["encoder"] == "encoder.int8.onnx" and doc["int8"]["mode"] == "int8"
    assert doc["prior"] is None and doc["edge_runtime"] == "brainvq_edge.py"
    for name, size in doc["file_bytes"].items():
        assert (out / name).stat().st_size == size
    assert doc["checks"]["fp32_vs_pytorch"]["index_agreement"] >= 0.99  # ties may round apart
    assert doc["checks"]["fp32_vs_pytorch"]["decoder_max_abs_diff"] < 1e-4
    assert sorted(p.name for p in out.iterdir()) == [
        "brainvq_edge.py",
        "decoder.int8.onnx",
        "decoder.onnx",
        "encoder.int8.onnx",
        "encoder.onnx",
        "export.json",
    ]


def test_int8_models_load_run_and_are_smaller(exported) -> None:
    model, out, manifest = exported
    x = structured_images(3)
    indices = session(out / "encoder.int8.onnx").run(None, {"images": x.numpy()})[0]
    assert indices.shape == (3, 8, 8) and indices.min() >= 0 and indices.max() < 16
    codes = model.encode(x).numpy()
    decoded = session(out / "decoder.int8.onnx").run(None, {"indices": codes})[0]
    assert decoded.shape == (3, 1, 32, 32) and np.isfinite(decoded).all()
    assert np.abs(decoded - model.decode_indices(model.encode(x)).numpy()).max() < 0.1
    for part in ("encoder", "decoder"):
        ops = {n.op_type for n in onnx.load(out / f"{part}.int8.onnx").graph.node}
        assert "ConvInteger" in ops, part
        sizes = manifest["file_bytes"]
        assert sizes[f"{part}.int8.onnx"] < sizes[f"{part}.onnx"]
    assert set(manifest["checks"]["int8_vs_fp32"]) == {"index_agreement", "decoder_max_abs_diff"}


def test_export_leaves_the_model_unchanged_and_replaces_old_int8_files(tmp_path: Path) -> None:
    model = small_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bundle = save_bundle(tmp_path / "VQVAE_Model", model, SMALL, kind="vqvae")
    out = tmp_path / "out"
    out.mkdir()
    (out / "encoder.int8.onnx").write_bytes(b"stale")
    (out / "notes.txt").write_text("mine")
    manifest = export_onnx(Bundle(model, SMALL, {}, bundle), out)
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert manifest["int8"] is None
    assert sorted(p.name for p in out.iterdir()) == [
        "brainvq_edge.py",
        "decoder.onnx",
        "encoder.onnx",
        "export.json",
        "notes.txt",
    ]


def test_decoder_refuses_indices_beyond_the_codebook(exported) -> None:
    _, out, _ = exported
    codes = np.full((1, 8, 8), 16, dtype=np.int64)
    with pytest.raises(InvalidArgument, match="out of data bounds"):
        session(out / "decoder.onnx").run(None, {"indices": codes})


def fit_one_step(module: L.LightningModule, batch: tuple[torch.Tensor, ...], root: Path) -> Path:
    """One real training step with a Lightning Trainer; returns the checkpoint it saves."""
    trainer = L.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )
    trainer.fit(module, DataLoader(TensorDataset(*batch), batch_size=len(batch[0])))
    ckpt = root / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt


@pytest.fixture(scope="module")
def vqvae_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, VQVAEModule]:
    torch.manual_seed(0)
    module = VQVAEModule(SMALL, TrainConfig(warmup_steps=0), total_steps=1)
    batch = (structured_images(4), torch.zeros(4, dtype=torch.long))
    return fit_one_step(module, batch, tmp_path_factory.mktemp("ckpt")), module


def test_from_ckpt_round_trip_then_onnx_export(vqvae_ckpt, tmp_path: Path) -> None:
    ckpt, module = vqvae_ckpt
    out = tmp_path / "converted"
    assert main(["export", "--from-ckpt", str(ckpt), "--out", str(out)]) == 0
    bundle = load_vqvae(out)
    assert bundle.path == out / "VQVAE_Model" and bundle.config == SMALL
    assert bundle.meta["global_step"] == 1 and bundle.meta["converted_from"] == "last.ckpt"
    for key, value in module.model.state_dict().items():
        assert torch.equal(value, bundle.model.state_dict()[key]), key
    onnx_dir = tmp_path / "onnx"
    assert main(["export", "--model", str(bundle.path), "--out", str(onnx_dir)]) == 0
    x = structured_images(2)
    indices = session(onnx_dir / "encoder.onnx").run(None, {"images": x.numpy()})[0]
    assert_codes_agree(indices, module.model, x)


def test_from_ckpt_converts_a_prior_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = PriorModule(TINY_PRIOR, TrainConfig(warmup_steps=0), total_steps=1)
    codes = torch.randint(0, 16, (4, 6, 6))
    ckpt = fit_one_step(module, (codes, torch.zeros(4, dtype=torch.long)), tmp_path)
    folder = checkpoint_to_bundle(ckpt, tmp_path / "out")
    assert folder == tmp_path / "out" / "PixelCNN_Model"
    loaded = load_prior(tmp_path / "out")
    assert loaded.config == TINY_PRIOR
    trained = module.model.eval()
    for key, value in trained.state_dict().items():  # the weights are copied bit for bit
        assert torch.equal(value, loaded.model.state_dict()[key]), key
    # The module trained channels_last and the bundle loads contiguous: the same weights run
    # through different convolution kernels, so the logits agree to rounding, not bit for bit.
    torch.testing.assert_close(loaded.model(codes), trained(codes), rtol=1e-5, atol=1e-5)


class _Exploit:
    """Unpickling this object writes a marker file: the proof that code from a file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.parametrize("style", ["torch.save", "raw pickle"])
def test_from_ckpt_refuses_a_planted_pickle(tmp_path: Path, capsys, style: str) -> None:
    marker = tmp_path / "marker.txt"
    ckpt = tmp_path / "evil.ckpt"
    doc = {"state_dict": {}, "hyper_parameters": {"vqvae": _Exploit(marker)}}
    if style == "torch.save":
        torch.save(doc, ckpt)
    else:
        ckpt.write_bytes(pickle.dumps(doc))
    assert main(["export", "--from-ckpt", str(ckpt), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "evil.ckpt was refused" in err and "weights_only=True" in err
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def _edited_checkpoint(vqvae_ckpt, tmp_path: Path, edit) -> Path:
    doc = torch.load(vqvae_ckpt[0], map_location="cpu", weights_only=True)
    edit(doc)
    path = tmp_path / "edited.ckpt"
    torch.save(doc, path)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["hyper_parameters"].pop("vqvae"), "exactly one of"),
        (lambda d: d["hyper_parameters"]["vqvae"].update(codebook_size=1), "vqvae.codebook_size"),
        (lambda d: d["hyper_parameters"]["vqvae"].update(codebook_size=32), "do not match"),
        (lambda d: d["hyper_parameters"]["vqvae"].update(wings=2), "wings: unknown key"),
        (lambda d: d.pop("state_dict"), "'state_dict' mapping"),
    ],
)
def test_from_ckpt_validates_config_and_weights(vqvae_ckpt, tmp_path: Path, edit, message) -> None:
    path = _edited_checkpoint(vqvae_ckpt, tmp_path, edit)
    with pytest.raises(CheckpointError, match=message):
        checkpoint_to_bundle(path, tmp_path / "out")
    assert not (tmp_path / "out" / "VQVAE_Model").exists()


def test_from_ckpt_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        checkpoint_to_bundle(tmp_path / "none.ckpt", tmp_path / "out")
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.ckpt"):
        checkpoint_to_bundle(empty, tmp_path / "out")


@pytest.fixture
def small_bundle(tmp_path: Path) -> Path:
    return save_bundle(tmp_path / "run" / "vqvae" / "VQVAE_Model", small_model(), SMALL, "vqvae")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "{tmp}/missing", "--out", "{tmp}/o"], "run directory not found"),
        (["--run", "{tmp}/run", "--out", "{tmp}/file.txt"], "is not a folder"),
        (["--model", "{tmp}/nothing", "--out", "{tmp}/o"], "not found"),
        (["--from-ckpt", "{tmp}/none.ckpt", "--out", "{tmp}/o"], "checkpoint not found"),
        (
            ["--from-ckpt", "{tmp}/none.ckpt", "--out", "{tmp}/o", "--quantize", "int8"],
            "--quantize",
        ),
        (["--from-ckpt", "{tmp}/none.ckpt", "--out", "{tmp}/o", "--with-prior"], "--with-prior"),
        (["--model", "{tmp}/run", "--out", "{tmp}/o", "--quantize", "int8-static"], "needs --run"),
        (["--model", "{tmp}/run", "--out", "{tmp}/o", "--with-prior"], "needs --run"),
        (["--run", "{tmp}/run", "--out", "{tmp}/o", "--calibration", "8"], "--calibration"),
        (["--run", "{tmp}/run", "--out", "{tmp}/o", "--quantize", "int8-static"], "not a brainvq"),
        (["--run", "{tmp}/run", "--out", "{tmp}/o", "--with-prior"], "model bundle not found"),
    ],
)
def test_cli_errors_exit_2(small_bundle: Path, tmp_path: Path, capsys, args, message) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    argv = ["export", *[a.format(tmp=tmp_path) for a in args]]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_run_export_and_missing_extra(small_bundle: Path, tmp_path: Path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert (
        main(["export", "--run", str(run), "--format", "onnx", "--out", str(tmp_path / "o")]) == 0
    )
    assert "indices agree 100.0%" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "o2")]) == 2
    assert "brainvq[export]" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_export_refuses_a_prior(tmp_path: Path) -> None:
    prior = GatedPixelCNN(TINY_PRIOR)
    folder = save_bundle(tmp_path / "PixelCNN_Model", prior, TINY_PRIOR, kind="prior")
    with pytest.raises(ValueError, match="expected 'vqvae'"):
        export_onnx(folder, tmp_path / "o")
    with pytest.raises(ValueError, match="expected a VQ-VAE bundle"):
        export_onnx(Bundle(prior, TINY_PRIOR, {}, folder), tmp_path / "o")


def smooth_images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """Smooth random images: (n, 1, size, size) float in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 6, 6, generator=g)
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear")


@pytest.fixture(scope="module")
def static_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[VQVAE, Path, dict]:
    model = small_model()
    bundle = save_bundle(tmp_path_factory.mktemp("m") / "VQVAE_Model", model, SMALL, kind="vqvae")
    images = torch.cat([structured_images(10), smooth_images(22, seed=1)])[:, 0]
    calibration = to_uint8(images.numpy())  # (32, 32, 32)
    out = tmp_path_factory.mktemp("static")
    return model, out, export_onnx(bundle, out, quantize="int8-static", calibration=calibration)


def test_static_int8_stays_within_its_ssim_and_code_bounds(static_export) -> None:
    """Against the fp32 ONNX models on slices the calibration did not see: SSIM vs the input
    within 0.005 of fp32's and at least 93% of the codes identical. (This VQ-VAE is untrained,
    so its latents sit nearer to several codes than a trained one's: 95% here; the issue's 97%
    target is measured on a trained run by benchmarks/bench_export.py.)"""
    _, out, manifest = static_export
    x = torch.cat([structured_images(5), smooth_images(11, seed=2)])
    results = {}
    for name, (enc, dec) in {
        "fp32": ("encoder.onnx", "decoder.onnx"),
        "int8": ("encoder.int8-static.onnx", "decoder.int8-static.onnx"),
    }.items():
        codes = session(out / enc).run(None, {"images": x.numpy()})[0]
        recon = session(out / dec).run(None, {"indices": codes})[0].clip(0, 1)
        results[name] = (codes, float(ssim(torch.from_numpy(recon), x).mean()))
    assert len(np.unique(results["fp32"][0])) > 5, "the check is only meaningful with varied codes"
    assert np.mean(results["int8"][0] == results["fp32"][0]) >= 0.93
    assert results["int8"][1] >= results["fp32"][1] - 0.005
    int8 = manifest["int8"]
    assert int8["mode"] == "int8-static" and int8["calibration_slices"] == 32
    sizes = manifest["file_bytes"]
    for part in ("encoder", "decoder"):
        assert sizes[f"{part}.int8-static.onnx"] < sizes[f"{part}.onnx"]
    assert manifest["checks"]["int8_vs_fp32"]["index_agreement"] >= 0.9


def test_static_int8_quantizes_the_convolutions_and_keeps_the_code_search_float(static_export):
    _, out, _ = static_export
    for part in ("encoder", "decoder"):
        graph = onnx.load(out / f"{part}.int8-static.onnx").graph
        ops = [n.op_type for n in graph.node]
        assert "QuantizeLinear" in ops and "DequantizeLinear" in ops, part
        quantized = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
        dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
        convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
        assert sum(n.input[1] in dequantized for n in convs) >= len(convs) - 1, part
        if part == "encoder":  # the latents and the nearest-code search stay float32
            assert convs[-1].input[1] not in dequantized and convs[-1].output[0] not in quantized
            for node in graph.node:
                if node.op_type in ("MatMul", "ArgMin", "ReduceSum"):
                    assert not set(node.input) & dequantized, node.name
        else:  # the codebook lookup too
            gather = next(n for n in graph.node if n.op_type == "Gather")
            assert gather.input[0] not in dequantized


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantize": "int8-static"}, "needs calibration slices"),
        ({"quantize": "int8-static", "calibration": np.zeros((4, 32, 32))}, "uint8 slices"),
        ({"quantize": "int8-static", "calibration": np.zeros((4, 16, 16), np.uint8)}, "32, 32"),
        ({"quantize": "int8-static", "calibration": np.zeros((0, 32, 32), np.uint8)}, "N >= 1"),
        ({"calibration": np.zeros((4, 32, 32), np.uint8)}, "only quantize='int8-static'"),
        ({"quantize": "int4"}, "quantize: expected None or one of"),
        ({"quantize": True}, "quantize: expected None or one of"),
    ],
)
def test_export_refuses_bad_quantize_arguments(small_bundle, tmp_path, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        export_onnx(small_bundle, tmp_path / "o", **kwargs)
    assert not (tmp_path / "o").exists()


def test_export_refuses_a_prior_of_another_codebook(small_bundle: Path, tmp_path: Path) -> None:
    config = PixelCNNConfig(codebook_size=32, embed_dim=8, channels=8, n_layers=2)
    prior = save_bundle(tmp_path / "PixelCNN_Model", GatedPixelCNN(config), config, "prior")
    with pytest.raises(ValueError, match="the prior models 32 codes"):
        export_onnx(small_bundle, tmp_path / "o", prior=prior)
    with pytest.raises(ValueError, match="expected a prior bundle"):
        export_onnx(small_bundle, tmp_path / "o", prior=Bundle(small_model(), SMALL, {}, tmp_path))


def test_cli_static_int8_with_prior_then_a_plain_export_removes_them(tmp_path: Path, capsys):
    """`brainvq export --run RUN --quantize int8-static --calibration N --with-prior` on a run
    (the tiny demo config; its models with random weights), then a plain export to the same
    folder removes the static and prior files it does not write."""
    run = tmp_path / "run"
    prepare_run(run, TINY_CONFIG, {})
    save_bundle(run / "vqvae" / "VQVAE_Model", small_model(), SMALL, "vqvae")
    save_bundle(run / "prior" / "PixelCNN_Model", GatedPixelCNN(TINY_PRIOR), TINY_PRIOR, "prior")
    out = tmp_path / "o"
    argv = ["export", "--run", str(run), "--out", str(out)]
    assert main([*argv, "--quantize", "int8-static", "--calibration", "16", "--with-prior"]) == 0
    text = capsys.readouterr().out
    assert "check int8_vs_fp32" in text and "check prior_vs_pytorch: logits max abs" in text
    doc = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert doc["int8"]["calibration_slices"] == 16 and doc["prior"]["n_levels"] == 0
    assert doc["checks"]["prior_vs_pytorch"]["logits_max_abs_diff"] < 1e-4
    for name in ("prior_row.onnx", "prior_position.onnx", "encoder.int8-static.onnx"):
        assert (out / name).is_file() and name in doc["file_bytes"]
    assert main([*argv, "--calibration", "1000000", "--quantize", "int8-static"]) == 2
    assert "has only" in capsys.readouterr().err
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "brainvq_edge.py",
        "decoder.onnx",
        "encoder.onnx",
        "export.json",
    ]
