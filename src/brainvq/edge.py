"""Generation without PyTorch: encode, decode, sample and complete code maps with numpy and
onnxruntime only, from a folder written by `brainvq export --with-prior`.

This module imports numpy, onnxruntime and the standard library, nothing else (not torch, not
the rest of brainvq), so it runs where PyTorch is not installed; `brainvq export` also copies it
into the export folder as `brainvq_edge.py`. It drives the graphs that brainvq.io.onnx_prior
exports, in the order of the PyTorch cached sampler (brainvq.inference.sampling):

    the row graph at row -1 (prepares row 0)
    for each row i: the position graph at every column j (logits -> draw -> the next column),
                    then the row graph at row i (prepares row i + 1)

Draws are inverse-CDF draws from softmax(logits / temperature) restricted to the top-k logits,
on one uniform per (sample, row, column), exactly as the PyTorch sampler draws them; given the
same uniforms both give the same code maps (up to draws whose uniform lies within float32
rounding of a CDF step). PyTorch's samplers draw their uniforms with
torch.rand(n, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), which
numpy cannot reproduce: pass those uniforms to get PyTorch's maps, or let `seed` draw them with
numpy.

    edge = EdgeModel("export")                  # export.json, the ONNX files
    codes = edge.sample(4, level=16, seed=0)    # (4, h, w) int64
    images = edge.decode(codes)                 # (4, H, W) uint8
    subjects = edge.sample_subjects(2)          # (2, L, h, w): a prior of whole subjects

A prior of whole subjects (`prior: {neighbour: previous}`) adds a third graph: the features of
the slice below (prior_neighbour.onnx), computed once per slice and fed to the row graph.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

MANIFEST_FILE = "export.json"
MANIFEST_FORMAT = "brainvq-onnx"
MANIFEST_VERSIONS = (1, 2, 3, 4)
PARTS = ("encoder", "decoder")
PRIOR_ROW_FILE = "prior_row.onnx"
PRIOR_POSITION_FILE = "prior_position.onnx"
PRIOR_NEIGHBOUR_FILE = "prior_neighbour.onnx"  # a prior of whole subjects: the slice below
# Graph inputs and outputs; a cache `x` comes back as `next_x`.
ROW_INPUTS = ("codes", "row")
LEVEL = "level"
BELOW, BELOW_MAP = "below", "below_map"  # the slice below's codes, and their features
NO_SLICE = -1  # no slice below
ROW_OUTPUTS = ("first_row", "v_to_h")
POSITION_STATE = ("left_emb", "h_left")
POSITION_INPUTS = ("prev_code", *POSITION_STATE, "first", "to_h")
POSITION_OUTPUTS = ("logits",)
NO_CODE_NOTE = "prev_code = no_code (= codebook_size, a zero embedding) at column 0"
# The prior's steps are tiny operations, for which a second thread costs more than it saves
# (as for the PyTorch sampler: brainvq.inference.threads).
PRIOR_THREADS = 1


def next_name(name: str) -> str:
    """The output name of cache `name` after a step."""
    return f"next_{name}"


def _session(path: Path, threads: int | None) -> ort.InferenceSession:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; export the run again")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def draw_codes(
    logits: np.ndarray, uniforms: np.ndarray, temperature: float, top_k: int | None
) -> np.ndarray:
    """Inverse-CDF draw from softmax(logits / temperature), restricted to the top-k logits.

    logits: (n, K) float; uniforms: (n,) float in [0, 1) -> (n,) int64 in [0, K). The numpy
    twin of brainvq.inference.sampling.draw_codes (float64, searchsorted right=True).
    """
    z = logits.astype(np.float64) / temperature  # (n, K)
    k = z.shape[1]
    if top_k is not None and top_k < k:
        kth = -np.partition(-z, top_k - 1, axis=1)[:, top_k - 1 : top_k]  # (n, 1)
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)  # (n, K)
    target = uniforms.astype(np.float64) * cdf[:, -1]  # (n,)
    # the first code whose CDF exceeds the target (right=True): never a zero-probability one
    idx = (cdf <= target[:, None]).sum(axis=1)
    return np.minimum(idx, k - 1).astype(np.int64)


class EdgePrior:
    """The exported prior: sampling, completion and teacher-forced logits of code maps.

    folder: where the graphs are; entry: export.json's `prior` entry.
    """

    def __init__(self, folder: Path, entry: dict[str, Any], threads: int = PRIOR_THREADS) -> None:
        self.h, self.w = entry["latent_shape"]
        self.codebook_size = int(entry["codebook_size"])
        self.n_levels = int(entry["n_levels"])
        self.no_code = int(entry["no_code"])
        self.state = entry["state"]
        self.row = _session(folder / entry["row"]["file"], threads)
        self.position = _session(folder / entry["position"]["file"], threads)
        below = entry.get("neighbour")
        self.neighbour = None if not below else _session(folder / below["file"], threads)
        self.row_outputs = entry["row"]["outputs"]
        self.position_outputs = entry["position"]["outputs"]

    def levels(self, level: int | np.ndarray | None, n: int) -> np.ndarray | None:
        """`level` as (n,) int64 in [0, n_levels), or None for a model without levels."""
        if self.n_levels == 0:
            if level is not None:
                raise ValueError("level: this prior is unconditional (n_levels=0); pass None")
            return None
        if level is None:
            raise ValueError(
                f"level: this prior is conditioned on the slice level; pass a level in "
                f"[0, {self.n_levels})"
            )
        if isinstance(level, (bool, np.bool_)):
            raise ValueError(f"level: expected an int or an ({n},) integer array, got {level!r}")
        array = np.asarray(level)
        if array.ndim == 0:
            array = np.full(n, array)
        if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"level: expected an int or an ({n},) integer array, got {array.shape} "
                f"{array.dtype}"
            )
        if array.min() < 0 or array.max() >= self.n_levels:
            raise ValueError(
                f"level: expected levels in [0, {self.n_levels}), got "
                f"[{array.min()}, {array.max()}]"
            )
        return array.astype(np.int64)

    def _zeros(self, part: str, n: int) -> dict[str, np.ndarray]:
        return {k: np.zeros((n, *shape), np.float32) for k, shape in self.state[part].items()}

    def check_below(self, below: np.ndarray | None, n: int) -> np.ndarray | None:
        """The slices below n maps, (n, h, w) int64 in [-1, K), for a prior of whole subjects
        (None: no slice below); ValueError naming `below` when they do not fit."""
        if below is None:
            return None
        if self.neighbour is None:
            raise ValueError("below: this prior does not condition on the slice below")
        b = np.asarray(below)
        if b.shape != (n, self.h, self.w) or not np.issubdtype(b.dtype, np.integer):
            raise ValueError(f"below: expected ({n}, {self.h}, {self.w}) integers, got {b.shape}")
        if b.size and (b.min() < NO_SLICE or b.max() >= self.codebook_size):
            raise ValueError(f"below: expected codes in [-1, {self.codebook_size})")
        return b.astype(np.int64)

    def _row(
        self,
        codes: np.ndarray,
        r: int,
        level: np.ndarray | None,
        state: dict[str, np.ndarray],
        below_map: np.ndarray | None,
    ) -> dict[str, np.ndarray]:
        """The row graph at row r: updates `state`; returns row r + 1's inputs (column first)."""
        feed = {"codes": codes, "row": np.array([r], np.int64), **state}
        if level is not None:
            feed[LEVEL] = level
        if below_map is not None:
            feed[BELOW_MAP] = below_map
        out = dict(zip(self.row_outputs, self.row.run(self.row_outputs, feed), strict=True))
        for name in state:
            state[name] = out[next_name(name)]
        return {name: out[name] for name in ROW_OUTPUTS}

    def run(
        self,
        codes: np.ndarray,
        level: np.ndarray | None,
        keep_rows: int,
        choose: Callable[[np.ndarray, int, int], np.ndarray],
        below: np.ndarray | None = None,
    ) -> None:
        """Fill codes (n, h, w) int64 in place from row keep_rows on: at every position,
        choose(logits (n, K), i, j) gives the codes (n,) int64 that go there. below: the
        slices below (n, h, w) int64 (checked), or None: none."""
        n, h, w = codes.shape
        below_map = None
        if self.neighbour is not None:
            below = np.full((n, h, w), NO_SLICE, np.int64) if below is None else below
            below_map = self.neighbour.run(None, {BELOW: below})[0]  # (n, Cc, h, w)
        state = self._zeros("row", n)
        rows = self._row(np.zeros((n, w), np.int64), -1, level, state, below_map)
        for i in range(h):
            if i >= keep_rows:
                left = self._zeros("position", n)
                prev = np.full(n, self.no_code, np.int64)
                for j in range(w):
                    feed = {"prev_code": prev, **left}
                    feed |= {"first": rows["first_row"][j], "to_h": rows["v_to_h"][j]}
                    out = self.position.run(self.position_outputs, feed)
                    left = dict(zip(POSITION_STATE, out[1:], strict=True))
                    prev = choose(out[0], i, j)
                    codes[:, i, j] = prev
            if i + 1 < h:
                rows = self._row(np.ascontiguousarray(codes[:, i]), i, level, state, below_map)


def _check_uniforms(uniforms: np.ndarray | None, shape: tuple[int, ...], seed: int) -> np.ndarray:
    if uniforms is None:
        return np.random.default_rng(seed).random(shape)
    u = np.asarray(uniforms)
    if u.shape != shape or not np.issubdtype(u.dtype, np.floating):
        raise ValueError(f"uniforms: expected a {shape} float array, got {u.shape} {u.dtype}")
    if u.size and (u.min() < 0 or u.max() >= 1):
        raise ValueError(f"uniforms: expected values in [0, 1), got [{u.min()}, {u.max()}]")
    return u


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}: expected an integer {bounds}, got {value}")
    return int(value)


class EdgeModel:
    """An export folder: the VQ-VAE's encoder and decoder and, when exported, the prior.

    folder: written by `brainvq export` (export.json and the ONNX files). threads: intra-op
    threads of the encoder and decoder (None: onnxruntime's default, every core); the prior's
    steps run on PRIOR_THREADS. int8: the parts ("encoder", "decoder") to run with the int8
    models the export wrote; e.g. ("decoder",) keeps the codes exactly the fp32 encoder's.
    """

    def __init__(
        self, folder: str | Path, threads: int | None = None, int8: tuple[str, ...] = ()
    ) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; expected a folder made by brainvq export")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"{path}: expected format {MANIFEST_FORMAT!r}")
        if doc.get("format_version") not in MANIFEST_VERSIONS:
            raise ValueError(
                f"{path}: format_version {doc.get('format_version')!r}, expected one of "
                f"{list(MANIFEST_VERSIONS)}"
            )
        if doc.get("dims", 2) != 2:
            raise ValueError(
                f"{path}: a 3D VQ-VAE's export (dims {doc.get('dims')}); this runtime codes and "
                "draws 2D code maps only: run its encoder.onnx and decoder.onnx with onnxruntime"
            )
        unknown = set(int8) - set(PARTS)
        if isinstance(int8, str) or unknown:
            raise ValueError(f"int8: expected a tuple of parts from {PARTS}, got {int8!r}")
        if int8 and not doc.get("int8"):
            raise ValueError(f"{path}: this export has no int8 models (export with --quantize)")
        self.manifest = doc
        self.threads = threads
        self._files = {
            part: self.folder / (doc["int8"][part] if part in int8 else doc[part]["file"])
            for part in PARTS
        }
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._prior: EdgePrior | None = None

    def _codec(self, part: str) -> ort.InferenceSession:
        if part not in self._sessions:
            self._sessions[part] = _session(self._files[part], self.threads)
        return self._sessions[part]

    @property
    def prior(self) -> EdgePrior:
        if self._prior is None:
            entry = self.manifest.get("prior")
            if not entry:
                raise ValueError(
                    f"{self.folder / MANIFEST_FILE} has no prior; export it with "
                    "`brainvq export --run RUN --format onnx --with-prior`"
                )
            self._prior = EdgePrior(self.folder, entry)
        return self._prior

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 slices (N, H, W) at the export's image size -> code maps (N, h, w) int64."""
        size = self.manifest["image_size"]
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (size, size):
            raise ValueError(
                f"images: expected (N, {size}, {size}) uint8, got {images.shape} {images.dtype}"
            )
        x = (images.astype(np.float32) / 255.0)[:, None]  # (N, 1, H, W)
        return self._codec("encoder").run(None, {"images": x})[0]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Code maps (N, h, w) integers in [0, K) -> uint8 slices (N, H, W)."""
        codes = self._check_codes(codes)
        x = self._codec("decoder").run(None, {"indices": codes})[0]  # (N, 1, H, W) float32
        return (np.clip(x[:, 0], 0.0, 1.0) * 255).round().astype(np.uint8)

    def _check_codes(self, codes: np.ndarray) -> np.ndarray:
        latent, k = self.manifest["latent_size"], self.manifest["codebook_size"]
        codes = np.asarray(codes)
        if codes.ndim != 3 or codes.shape[1:] != (latent, latent):
            raise ValueError(f"codes: expected (N, {latent}, {latent}), got {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes: expected integers, got {codes.dtype}")
        if codes.size and (codes.min() < 0 or codes.max() >= k):
            raise ValueError(
                f"codes: expected values in [0, {k}), got [{codes.min()}, {codes.max()}]"
            )
        return codes.astype(np.int64)

    def sample(
        self,
        n: int,
        level: int | np.ndarray | None = None,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int = 0,
        uniforms: np.ndarray | None = None,
        init_codes: np.ndarray | None = None,
        keep_rows: int = 0,
        below: np.ndarray | None = None,
    ) -> np.ndarray:
        """Draw n code maps (n, h, w) int64 from the prior, as brainvq.inference.sampling.sample.

        level: an int or an (n,) integer array in [0, n_levels); None for a prior without
        levels. uniforms: (n, h, w) float in [0, 1), one per draw (default: numpy's generator
        seeded with `seed`). init_codes: (n, h, w) whose first keep_rows rows are kept. below:
        (n, h, w) the code maps of the slices below (a prior of whole subjects; -1: none).
        """
        prior = self.prior
        n = _check_int("n", n, 1)
        h, w, k = prior.h, prior.w, prior.codebook_size
        if not temperature > 0:
            raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")
        if top_k is not None:
            _check_int("top_k", top_k, 1, k)
        keep_rows = _check_int("keep_rows", keep_rows, 0, h)
        codes = np.zeros((n, h, w), np.int64)
        if init_codes is not None:
            init = self._check_codes(init_codes)
            if init.shape[0] != n:
                raise ValueError(f"init_codes: expected {n} code maps, got {init.shape[0]}")
            codes[:, :keep_rows] = init[:, :keep_rows]
        elif keep_rows > 0:
            raise ValueError(f"init_codes: keep_rows={keep_rows} needs the code maps to keep")
        levels = prior.levels(level, n)
        below = prior.check_below(below, n)
        u = _check_uniforms(uniforms, (n, h, w), seed)

        def draw(logits: np.ndarray, i: int, j: int) -> np.ndarray:
            return draw_codes(logits, u[:, i, j], temperature, top_k)

        prior.run(codes, levels, keep_rows, draw, below)
        return codes

    def sample_subjects(
        self,
        n: int,
        first_level: int = 0,
        n_slices: int | None = None,
        *,
        uniforms: np.ndarray | None = None,
        seed: int = 0,
        **options: Any,
    ) -> np.ndarray:
        """n whole subjects (n, L, h, w) int64, slice l at level first_level + l drawn given
        slice l - 1, as brainvq.inference.subjects.sample_subjects (a prior of whole subjects).
        uniforms: (n, L, h, w) float in [0, 1) (PyTorch's: its draw_uniforms(n, (L, h, w),
        seed)); options: temperature, top_k."""
        prior = self.prior
        if prior.neighbour is None:
            raise ValueError("this prior does not condition on the slice below: no subjects")
        first = _check_int("first_level", first_level, 0, max(prior.n_levels - 1, 0))
        default = prior.n_levels - first if prior.n_levels else None
        count = _check_int("n_slices", default if n_slices is None else n_slices, 1)
        if prior.n_levels and first + count > prior.n_levels:
            raise ValueError(f"n_slices: {count} slices from level {first} pass the last level")
        n = _check_int("n", n, 1)
        u = _check_uniforms(uniforms, (n, count, prior.h, prior.w), seed)
        out = np.zeros((n, count, prior.h, prior.w), np.int64)
        for lv in range(count):
            level = first + lv if prior.n_levels else None
            below = out[:, lv - 1] if lv else None
            out[:, lv] = self.sample(n, level, uniforms=u[:, lv], below=below, **options)
        return out

    def complete(
        self,
        codes: np.ndarray,
        keep_rows: int,
        n: int = 1,
        *,
        level: int | np.ndarray | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int = 0,
        uniforms: np.ndarray | None = None,
    ) -> np.ndarray:
        """Keep the first keep_rows rows of each code map (B, h, w) and sample the rest n times,
        as brainvq.inference.sampling.complete: (B * n, h, w), completions of codes[b] at rows
        b * n .. b * n + n - 1. level: an int or a (B,) array; uniforms: (B * n, h, w)."""
        codes = self._check_codes(codes)
        n = _check_int("n", n, 1)
        if level is not None and np.ndim(level) == 1:
            level = np.repeat(self.prior.levels(level, len(codes)), n)
        return self.sample(
            len(codes) * n,
            level,
            temperature=temperature,
            top_k=top_k,
            seed=seed,
            uniforms=uniforms,
            init_codes=np.repeat(codes, n, axis=0),
            keep_rows=keep_rows,
        )

    def generate(self, n: int, level: int | np.ndarray | None = None, **options: Any):
        """n new slices: (codes (n, h, w) int64, images (n, H, W) uint8); options as sample."""
        codes = self.sample(n, level, **options)
        return codes, self.decode(codes)

    def teacher_forced_logits(
        self,
        codes: np.ndarray,
        level: int | np.ndarray | None = None,
        below: np.ndarray | None = None,
    ) -> np.ndarray:
        """The prior's logits (B, K, h, w) float32 for given code maps (B, h, w), position by
        position through the exported steps (for checking them against the PyTorch model)."""
        codes = self._check_codes(codes)
        levels = self.prior.levels(level, len(codes))
        below = self.prior.check_below(below, len(codes))
        return teacher_forced_logits(self.prior, codes, levels, below)


def teacher_forced_logits(
    prior: EdgePrior, codes: np.ndarray, level: np.ndarray | None, below: np.ndarray | None = None
) -> np.ndarray:
    """prior's logits (B, K, h, w) float32 for code maps (B, h, w) int64 (checked by the
    caller, as below), with the given codes in place of draws."""
    b, h, w = codes.shape
    out = np.empty((b, prior.codebook_size, h, w), np.float32)

    def given(logits: np.ndarray, i: int, j: int) -> np.ndarray:
        out[:, :, i, j] = logits
        return codes[:, i, j]

    prior.run(codes.copy(), level, 0, given, below)
    return out
