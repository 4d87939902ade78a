"""brainvq: discrete codes of brain MRI (VQ-VAE) and a PixelCNN prior over them.

The notebook API. Images are (N, H, W) uint8 slices (as `load_slices` gives them), code maps
(N, h, w) integer arrays; a run is a folder (brainvq.run.RunLayout). Every function imports
what it needs when called, so `import brainvq` stays fast.

    import brainvq
    slices = brainvq.load_slices("demo")                          # a SliceSet
    metrics = brainvq.train_all("runs/nb", data="demo")            # both stages + report
    vqvae = brainvq.load_vqvae("runs/nb")
    codes = brainvq.encode(vqvae, slices.images[:8])               # (8, 32, 32)
    images = brainvq.decode(vqvae, codes)                          # (8, 128, 128) uint8
    codes, samples = brainvq.sample("runs/nb", n=4, level=16)      # generated slices
    codes, volumes, levels = brainvq.sample_subjects("runs/nb", n=2)  # whole subjects
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainvq._version import __version__

if TYPE_CHECKING:
    import numpy as np

    from brainvq.app.anomaly.find import AnomalyResult
    from brainvq.data.sliceset import SliceSet
    from brainvq.inference.run_models import RunModels
    from brainvq.io.bundle import Bundle

__all__ = [
    "__version__",
    "anomaly",
    "build_report",
    "calibrate_anomaly",
    "complete",
    "decode",
    "encode",
    "evaluate",
    "load_prior",
    "load_run",
    "load_run_models",
    "load_slices",
    "load_vqvae",
    "sample",
    "sample_subjects",
    "train_all",
    "train_prior",
    "train_vqvae",
]


def load_slices(source: str | Path, size: int = 128, **options: Any) -> SliceSet:
    """Slices of `source` ("demo", an OASIS folder or zip, a PNG/JPEG folder, NIfTI volumes)
    at size x size; options as brainvq.data.loader.load_slices (n_levels, cache_dir, ...)."""
    from brainvq.data import load_slices as load

    return load(source, size=size, **options)


def load_vqvae(path: str | Path) -> Bundle:
    """A VQ-VAE bundle (a VQVAE_Model folder or a run): .model, .config, .meta."""
    from brainvq.io.bundle import load_vqvae as load

    return load(path)


def load_prior(path: str | Path) -> Bundle:
    """A PixelCNN prior bundle (a PixelCNN_Model folder or a run)."""
    from brainvq.io.bundle import load_prior as load

    return load(path)


def load_run_models(run_dir: str | Path) -> RunModels:
    """A run's VQ-VAE and prior together."""
    from brainvq.inference.run_models import load_run_models as load

    return load(run_dir)


def load_run(run_dir: str | Path):
    """A run's configuration (RUN/config.yaml) as a brainvq.run_config.RunConfig."""
    from brainvq.run import load_run as load

    return load(run_dir)


def _vqvae(model: Bundle | str | Path) -> Bundle:
    return load_vqvae(model) if isinstance(model, (str, Path)) else model


def _models(run: RunModels | str | Path) -> RunModels:
    return load_run_models(run) if isinstance(run, (str, Path)) else run


def encode(vqvae: Bundle | str | Path, images: np.ndarray) -> np.ndarray:
    """uint8 slices (N, H, W) -> code maps (N, h, w) int16; a 3D VQ-VAE: uint8 volumes
    (S, D, H, W), a subject's slices in level order, -> code volumes (S, D', h, w) int16."""
    from brainvq.inference.codes import encode_images

    return encode_images(_vqvae(vqvae).model, images)


def decode(vqvae: Bundle | str | Path, codes: np.ndarray) -> np.ndarray:
    """Code maps (N, h, w) -> uint8 slices (N, H, W); a 3D VQ-VAE: code volumes
    (S, D', h, w) -> uint8 volumes (S, D, H, W)."""
    from brainvq.inference.codes import decode_codes

    return decode_codes(_vqvae(vqvae).model, codes)


def sample(
    run: RunModels | str | Path,
    n: int = 16,
    level: int | None = None,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """n generated slices: (codes (n, h, w), images (n, H, W) uint8). A conditional prior
    samples at `level`, or at levels spread over its range when level is None."""
    import numpy as np

    from brainvq.inference.generate import (
        check_level,
        generate_slices,
        result_bytes,
        spread_levels,
    )
    from brainvq.inference.sampling_options import SamplingOptions
    from brainvq.values import COUNT, check_memory

    options = SamplingOptions(temperature=temperature, top_k=top_k, seed=seed)
    models = _models(run)
    COUNT.check("n", n)  # before the levels of n slices are made: refused before any work
    check_memory("n", n, result_bytes(models), "one slice's code map and image")
    if level is None:
        levels = spread_levels(n, models.n_levels)
    else:
        levels = np.full(n, check_level(models, level, "level"))
    return generate_slices(models, n, levels, options=options, progress=False)


def sample_subjects(
    run: RunModels | str | Path,
    n: int = 1,
    *,
    first_level: int = 0,
    n_slices: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n whole subjects drawn slice by slice from first_level up, each slice given the one below
    (a prior trained with `prior: {neighbour: previous}`; ValueError for one without):
    (codes (n, L, h, w), images (n, L, H, W) uint8, levels (L,)). With `out` (and a run
    folder), also writes them there as `brainvq sample --subjects` does (NIfTI volumes on the
    run's frame, montages, orthogonal views)."""
    from brainvq.inference.generate import generate_subjects
    from brainvq.inference.sampling_options import SamplingOptions

    options = SamplingOptions(temperature=temperature, top_k=top_k, seed=seed)
    models = _models(run)
    drawn = generate_subjects(
        models, n, first_level=first_level, n_slices=n_slices, options=options, progress=False
    )
    if out is not None:
        if not isinstance(run, (str, Path)):
            raise ValueError("out: writing subjects needs the run folder as `run`, not models")
        from brainvq.app.subjects import drawn_with, write_subjects

        write_subjects(run, out, drawn[1], drawn[2], first_level, **drawn_with(options))
    return drawn


def complete(
    run: RunModels | str | Path,
    images: np.ndarray,
    keep_rows: int,
    n: int = 4,
    levels: np.ndarray | None = None,
    *,
    temperature: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the top keep_rows latent rows of each slice (B, H, W) uint8 and sample the rest n
    times: (completed code maps (B, n, h, w), their images (B, n, H, W) uint8). `levels` (B,)
    is needed for a conditional prior."""
    from brainvq.inference.generate import complete_slices
    from brainvq.inference.sampling_options import SamplingOptions

    options = SamplingOptions(temperature=temperature, seed=seed)
    models = _models(run)
    return complete_slices(models, images, levels, keep_rows, n, options=options, progress=False)


def anomaly(
    run_dir: str | Path,
    source: str | Path,
    out: str | Path | None = None,
    *,
    alpha: float = 0.01,
    scan_alpha: float | None = None,
    n_heal: int | None = None,
    level: int | None = None,
    seed: int = 0,
    mask: str | Path | None = None,
    series: str | None = None,
) -> AnomalyResult:
    """Anomaly maps of every slice of `source` (a PNG/JPEG, a folder, volumes: NIfTI, MGZ,
    NRRD/MHA, a DICOM series' folder (`series`: which one, when several are plausible), a BIDS
    tree; an OASIS set) with the run's slice prior, thresholded at false-positive rate alpha
    (pixels and slices; scans, by Simes' combination of their slices: scan_alpha, default alpha;
    calibrated on the run's healthy validate slices on first use; n_heal and the other
    settings: the run config's `anomaly:` section). .maps (N, H, W) float32, .masks (N, H, W)
    bool, .scores (N,), .flagged (N,), .names; volumes are registered to the run's frame
    (.volumes, .shift: whether the calibration applies to each; `mask`: a volume's own brain
    mask); with `out`, also writes them there as `brainvq anomaly` does (volumes as NIfTI files
    in their own space)."""
    from brainvq.app.anomaly.files import write_anomalies
    from brainvq.app.anomaly.find import check_options, find_anomalies
    from brainvq.atomic import output_folder

    # the rules of their flags: refused before any work
    check_options(alpha, n_heal, seed, scan_alpha)
    if out is not None:
        output_folder(out, "out")  # fail before any work when it is a file
    result = find_anomalies(
        run_dir,
        source,
        alpha=alpha,
        scan_alpha=scan_alpha,
        n_heal=n_heal,
        level=level,
        seed=seed,
        mask=mask,
        progress=False,
        series=series,
    )
    if out is not None:
        write_anomalies(result, out)
    return result


def calibrate_anomaly(
    run_dir: str | Path,
    healthy: str | Path | None = None,
    alpha: float = 0.01,
    series: str | None = None,
) -> Any:
    """(Re)calibrate the run's anomaly thresholds on its validate split, or on the user's own
    healthy scans `healthy` (volumes, a folder of them, or of slices; series: a DICOM input's
    series)."""
    from brainvq.app.anomaly.calibration import calibrate_run

    return calibrate_run(run_dir, alpha, healthy=healthy, progress=False, series=series)


def _prepare(run_dir: str | Path, data: str | None, config: str | Path | None):
    from brainvq.app.presets import prepare_training_run

    overrides = {"data": {"source": data}} if data else {}
    return prepare_training_run(run_dir, config, data, overrides).config


def train_vqvae(
    run_dir: str | Path,
    data: str | None = None,
    config: str | Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train and evaluate a run's VQ-VAE (config: a YAML file; default: the packaged config
    that fits this machine). Returns RUN/metrics.json."""
    from brainvq.app.pipeline import train_vqvae as train
    from brainvq.app.run_data import run_slices

    cfg = _prepare(run_dir, data, config)
    return train(Path(run_dir), cfg, run_slices(cfg), resume=resume)


def train_prior(run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train and evaluate the prior of a run whose VQ-VAE is trained. Returns metrics.json."""
    from brainvq.app.pipeline import train_prior as train
    from brainvq.app.run_data import run_slices
    from brainvq.run import load_run as load

    cfg = load(run_dir)
    return train(Path(run_dir), cfg, run_slices(cfg), resume=resume)


def train_all(
    run_dir: str | Path,
    data: str | None = None,
    config: str | Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Both stages, their evaluation and the report. Returns metrics.json."""
    from brainvq.app.pipeline import train_all as train

    return train(Path(run_dir), _prepare(run_dir, data, config), resume=resume).metrics


def evaluate(
    run_dir: str | Path, data: str | None = None, split: str | None = None
) -> dict[str, Any]:
    """Reconstruction metrics of a run's VQ-VAE on `split` (default test, else validate) of
    its data (or of `data`). Returns metrics.json."""
    from brainvq.app.pipeline import evaluate_run
    from brainvq.app.run_data import run_slices

    cfg = load_run(run_dir)
    return evaluate_run(Path(run_dir), run_slices(cfg, source=data), split)


def build_report(run_dir: str | Path) -> Path:
    """RUN/figures/ and RUN/report.html from the run's files. Returns the page's path."""
    from brainvq.report.build import build_report as build

    return build(run_dir)
