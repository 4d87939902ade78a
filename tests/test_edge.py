"""brainvq.edge: the exported prior steps, driven by numpy + onnxruntime, draw the PyTorch
cached sampler's code maps code for code, run where torch cannot be imported, and refuse bad
input with messages that name it.

Why code-for-code equality holds although ONNX and PyTorch logits differ by ~1e-6: both draw
with the same uniform u per position, as the first code whose CDF exceeds u * total. A
difference of d in the logits moves each CDF step by about d, so a draw can only change when u
lies within ~d of a step: with ~1e-6 and the few hundred draws of these fixtures, the chance
that any draw flips is below 1e-3. The fixtures are kept small for that reason too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import brainvq.edge
from brainvq.edge import EdgeModel, draw_codes
from brainvq.inference.codes import decode_codes
from brainvq.inference.sampling import complete, draw_uniforms, sample
from brainvq.inference.sampling import draw_codes as torch_draw_codes
from brainvq.inference.subjects import sample_subjects
from brainvq.io.bundle import save_bundle
from brainvq.io.onnx import export_onnx
from brainvq.models.pixelcnn import GatedPixelCNN, PixelCNNConfig
from brainvq.models.vqvae import VQVAE, VQVAEConfig

VQVAE_CONFIG = VQVAEConfig(
    image_size=32, channels=(8, 16), res_blocks=1, res_channels=8, code_dim=8, codebook_size=16
)
LATENT = (8, 8)
_PRIOR = {"codebook_size": 16, "embed_dim": 8, "channels": 8, "n_layers": 2, "head_channels": 16}
VARIANTS = {
    # levels, position features and level maps (stored 4x4, resized to the 8x8 code maps)
    "levels": PixelCNNConfig(
        **_PRIOR, n_levels=3, cond_channels=4, map_size=4, position_frequencies=2
    ),
    # low-rank level maps, a wider gated kernel than the first one (k//2 = 2 > first's 1)
    "levels_rank": PixelCNNConfig(
        **{**_PRIOR, "n_layers": 3},
        n_levels=5,
        cond_channels=4,
        map_size=8,
        position_frequencies=1,
        level_map_rank=2,
        kernel_size=5,
        first_kernel=3,
    ),
    # no levels: one map for every sample
    "no_levels": PixelCNNConfig(**_PRIOR, n_levels=0, cond_channels=4, map_size=8),
    # no ConditionMap at all
    "no_map": PixelCNNConfig(**_PRIOR, n_levels=0, position_frequencies=0, level_maps=False),
    # a prior of whole subjects: levels and the slice below (prior_neighbour.onnx)
    "neighbour": PixelCNNConfig(
        **_PRIOR,
        n_levels=4,
        cond_channels=4,
        map_size=8,
        neighbour="previous",
        neighbour_channels=6,
    ),
}


def random_prior(config: PixelCNNConfig, seed: int = 0) -> GatedPixelCNN:
    """A prior with random weights, level maps included (they start at zero), so that every
    part of the network shapes the logits."""
    torch.manual_seed(seed)
    model = GatedPixelCNN(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def torch_uniforms(n: int, seed: int) -> np.ndarray:
    """The uniforms brainvq.inference.sampling.sample draws for (n, h, w) maps and `seed`."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *LATENT, generator=g, dtype=torch.float64).numpy()


@pytest.fixture(scope="module")
def vqvae_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vqvae") / "VQVAE_Model"
    return save_bundle(folder, VQVAE(VQVAE_CONFIG).eval(), VQVAE_CONFIG, kind="vqvae")


@pytest.fixture(scope="module")
def exported(vqvae_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """variant -> (the PyTorch prior, the export folder)."""
    out = {}
    for name, config in VARIANTS.items():
        prior = random_prior(config)
        bundle = save_bundle(
            tmp_path_factory.mktemp(name) / "PixelCNN_Model", prior, config, "prior"
        )
        folder = tmp_path_factory.mktemp(f"{name}_onnx")
        export_onnx(vqvae_bundle, folder, prior=bundle)
        out[name] = (prior, folder)
    return out


def _level(prior: GatedPixelCNN, n: int) -> tuple[torch.Tensor | None, np.ndarray | None]:
    if prior.config.n_levels == 0:
        return None, None
    level = torch.arange(n) % prior.config.n_levels
    return level, level.numpy()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("options", [{}, {"temperature": 0.7, "top_k": 5}])
def test_sampling_draws_the_pytorch_cached_samplers_codes(exported, variant, options) -> None:
    prior, folder = exported[variant]
    n, seed = 3, 11
    level_t, level_np = _level(prior, n)
    want = sample(prior, n, LATENT, level=level_t, seed=seed, **options).numpy()
    got = EdgeModel(folder).sample(n, level_np, uniforms=torch_uniforms(n, seed), **options)
    assert got.dtype == np.int64 and got.shape == (n, *LATENT)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got)) > 5, "the check is only meaningful with varied codes"


@pytest.mark.parametrize("variant", VARIANTS)
def test_completion_draws_the_pytorch_completions(exported, variant) -> None:
    prior, folder = exported[variant]
    g = torch.Generator().manual_seed(5)
    codes = torch.randint(0, 16, (2, *LATENT), generator=g)
    level_t, level_np = _level(prior, 2)
    want = complete(prior, codes, keep_rows=3, n=2, level=level_t, seed=4).numpy()
    edge = EdgeModel(folder)
    got = edge.complete(codes.numpy(), 3, 2, level=level_np, uniforms=torch_uniforms(4, 4))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[:, :3], np.repeat(codes.numpy()[:, :3], 2, axis=0))
    everything = edge.complete(codes.numpy(), LATENT[0], level=level_np)  # nothing to sample
    np.testing.assert_array_equal(everything, codes.numpy())


def test_one_level_for_all_samples_and_numpy_uniforms(exported) -> None:
    prior, folder = exported["levels"]
    edge = EdgeModel(folder)
    want = sample(prior, 2, LATENT, level=2, seed=3).numpy()
    np.testing.assert_array_equal(edge.sample(2, 2, uniforms=torch_uniforms(2, 3)), want)
    a, b = edge.sample(2, 2, seed=1), edge.sample(2, 2, seed=1)  # numpy's seeded uniforms
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, edge.sample(2, 2, seed=2))


@pytest.mark.parametrize("variant", VARIANTS)
def test_teacher_forced_logits_match_the_full_forward_pass(exported, variant) -> None:
    prior, folder = exported[variant]
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 16, (2, *LATENT), generator=g)
    level_t, level_np = _level(prior, 2)
    with torch.inference_mode():
        want = prior(codes, level_t).numpy()
    got = EdgeModel(folder).teacher_forced_logits(codes.numpy(), level_np)
    assert got.shape == want.shape == (2, 16, *LATENT)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    check = json.loads((folder / "export.json").read_text(encoding="utf-8"))["checks"][
        "prior_vs_pytorch"
    ]
    assert check["logits_max_abs_diff"] < 1e-5


def test_subjects_are_the_pytorch_samplers_subjects(exported) -> None:
    prior, folder = exported["neighbour"]
    edge = EdgeModel(folder)
    want = sample_subjects(prior, 2, LATENT, first_level=1, seed=6).numpy()  # (2, 3, 8, 8)
    uniforms = draw_uniforms(2, (3, *LATENT), 6).numpy()
    got = edge.sample_subjects(2, first_level=1, uniforms=uniforms)
    assert got.shape == (2, 3, *LATENT)
    np.testing.assert_array_equal(got, want)
    g = torch.Generator().manual_seed(2)
    codes, below = (torch.randint(0, 16, (2, *LATENT), generator=g) for _ in range(2))
    with torch.inference_mode():
        logits = prior(codes, torch.tensor([1, 3]), below).numpy()
    got = edge.teacher_forced_logits(codes.numpy(), np.array([1, 3]), below.numpy())
    np.testing.assert_allclose(got, logits, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="below: expected"):
        edge.sample(2, 1, below=np.zeros((2, 8, 7), int))
    with pytest.raises(ValueError, match="no subjects"):
        EdgeModel(exported["levels"][1]).sample_subjects(1)


def test_draw_codes_is_the_torch_draw_in_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 32, generator=g) * 3
    uniforms = torch.rand(500, generator=g, dtype=torch.float64)
    for temperature, top_k in ((1.0, None), (0.5, 3), (2.0, 32), (1.0, 1)):
        want = torch_draw_codes(logits, uniforms, temperature, top_k).numpy()
        got = draw_codes(logits.numpy(), uniforms.numpy(), temperature, top_k)
        np.testing.assert_array_equal(got, want)
    assert (draw_codes(logits.numpy(), uniforms.numpy(), 1.0, 1) == logits.argmax(1).numpy()).all()


def test_encode_and_decode_match_pytorch(exported, vqvae_bundle: Path) -> None:
    from brainvq.io.bundle import load_vqvae

    model = load_vqvae(vqvae_bundle).model
    _, folder = exported["levels"]
    edge = EdgeModel(folder, threads=1)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (3, *LATENT), generator=g).numpy()
    images = edge.decode(codes)
    assert images.dtype == np.uint8 and images.shape == (3, 32, 32)
    assert np.abs(images.astype(int) - decode_codes(model, codes).astype(int)).max() <= 1
    with torch.inference_mode():
        want = model.encode(torch.from_numpy(images).float().div(255).unsqueeze(1)).numpy()
    assert (edge.encode(images) == want).mean() >= 0.98  # ties may round apart
    generated_codes, generated = edge.generate(2, 1, seed=0)
    np.testing.assert_array_equal(generated, edge.decode(generated_codes))


def test_edge_runs_where_torch_cannot_be_imported(exported, tmp_path: Path) -> None:
    """A Python process in which `import torch` fails samples, completes and decodes with
    brainvq.edge and with the copy in the export folder, and gets PyTorch's code maps."""
    prior, folder = exported["levels"]
    np.save(tmp_path / "u.npy", torch_uniforms(2, 8))
    script = f"""
import sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
sys.path.insert(0, {str(folder)!r})
import numpy as np
import brainvq.edge
import brainvq_edge
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("torch was importable")
folder, u = {str(folder)!r}, np.load({str(tmp_path / "u.npy")!r})
edge = brainvq.edge.EdgeModel(folder)
codes = edge.sample(2, np.array([0, 2]), uniforms=u)
copy = brainvq_edge.EdgeModel(folder).sample(2, np.array([0, 2]), uniforms=u)
done = edge.complete(codes, 4, level=np.array([0, 2]), uniforms=u)
images = edge.decode(codes)
np.savez({str(tmp_path / "out.npz")!r}, codes=codes, copy=copy, done=done, images=images)
loaded = [m for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] == "torch"]
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    with np.load(tmp_path / "out.npz") as f:
        out = dict(f)
    want = sample(prior, 2, LATENT, level=torch.tensor([0, 2]), seed=8).numpy()
    np.testing.assert_array_equal(out["codes"], want)
    np.testing.assert_array_equal(out["copy"], want)
    np.testing.assert_array_equal(out["done"], want)  # the same uniforms redraw the same rows
    np.testing.assert_array_equal(out["images"], EdgeModel(folder).decode(want))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e: e.sample(0, 1), "n: expected an integer >= 1"),
        (lambda e: e.sample(2, None), "conditioned on the slice level"),
        (lambda e: e.sample(2, 3), r"levels in \[0, 3\)"),
        (lambda e: e.sample(2, np.array([0, 1, 2])), r"\(2,\) integer array"),
        (lambda e: e.sample(2, np.array([0.0, 1.0])), r"\(2,\) integer array"),
        (lambda e: e.sample(2, True), "expected an int"),
        (lambda e: e.sample(2, 1, temperature=0), "temperature"),
        (lambda e: e.sample(2, 1, top_k=17), r"top_k: expected an integer in \[1, 16\]"),
        (
            lambda e: e.sample(2, 1, uniforms=np.zeros((2, 8, 7))),
            r"uniforms: expected a \(2, 8, 8\)",
        ),
        (lambda e: e.sample(2, 1, uniforms=np.ones((2, 8, 8))), r"in \[0, 1\)"),
        (lambda e: e.sample(2, 1, keep_rows=2), "needs the code maps"),
        (lambda e: e.sample(2, 1, keep_rows=9), r"keep_rows: expected an integer in \[0, 8\]"),
        (lambda e: e.complete(np.zeros((2, 8, 8), int), 2, level=np.array([0])), r"\(2,\)"),
        (lambda e: e.decode(np.full((1, 8, 8), 16)), r"codes: expected values in \[0, 16\)"),
        (lambda e: e.decode(np.full((1, 8, 8), -1)), r"codes: expected values in \[0, 16\)"),
        (lambda e: e.decode(np.zeros((1, 8, 9), int)), r"codes: expected \(N, 8, 8\)"),
        (lambda e: e.decode(np.zeros((1, 8, 8))), "codes: expected integers"),
        (lambda e: e.encode(np.zeros((1, 32, 32))), r"images: expected \(N, 32, 32\) uint8"),
    ],
)
def test_bad_input_is_refused_with_a_message(exported, call, message) -> None:
    _, folder = exported["levels"]
    with pytest.raises(ValueError, match=message):
        call(EdgeModel(folder))


def test_an_unconditional_prior_refuses_a_level(exported) -> None:
    _, folder = exported["no_levels"]
    with pytest.raises(ValueError, match="unconditional"):
        EdgeModel(folder).sample(1, 0)


def test_bad_export_folders_are_refused(exported, vqvae_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="export.json not found"):
        EdgeModel(tmp_path / "nothing")
    for text, message in (
        ("{not json", "not valid JSON"),
        ('{"format": "other"}', "expected format 'brainvq-onnx'"),
        ('{"format": "brainvq-onnx", "format_version": 9}', "format_version 9"),
    ):
        (tmp_path / "export.json").write_text(text)
        with pytest.raises(ValueError, match=message):
            EdgeModel(tmp_path)
    plain = tmp_path / "plain"
    export_onnx(vqvae_bundle, plain)  # no prior, no int8 models
    with pytest.raises(ValueError, match="has no prior; export it with"):
        EdgeModel(plain).sample(1)
    with pytest.raises(ValueError, match="no int8 models"):
        EdgeModel(plain, int8=("decoder",))
    with pytest.raises(ValueError, match="int8: expected a tuple of parts"):
        EdgeModel(plain, int8="decoder")
    (plain / "decoder.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="decoder.onnx is missing"):
        EdgeModel(plain).decode(np.zeros((1, 8, 8), int))


def test_edge_imports_nothing_but_numpy_onnxruntime_and_the_standard_library() -> None:
    import ast

    tree = ast.parse(Path(brainvq.edge.__file__).read_text(encoding="utf-8"))
    modules = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    modules |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert modules - set(sys.stdlib_module_names) == {"numpy", "onnxruntime"}


def test_int8_models_are_chosen_part_by_part(vqvae_bundle: Path, tmp_path: Path) -> None:
    export_onnx(vqvae_bundle, tmp_path, quantize="int8")
    codes = np.random.default_rng(0).integers(0, 16, (2, *LATENT))
    fp32, mixed = EdgeModel(tmp_path), EdgeModel(tmp_path, int8=("decoder",))
    assert mixed._files["decoder"].name == "decoder.int8.onnx"
    assert mixed._files["encoder"].name == "encoder.onnx"
    a, b = fp32.decode(codes), mixed.decode(codes)
    assert a.shape == b.shape == (2, 32, 32) and np.abs(a.astype(int) - b.astype(int)).max() < 40
    np.testing.assert_array_equal(fp32.encode(a), mixed.encode(a))  # the same fp32 encoder
