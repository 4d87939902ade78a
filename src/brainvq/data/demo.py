"""The demo cohort: virtual subjects made from the MNI152 2009 template that nilearn ships.

Each subject is the skull-stripped template under its own smooth random deformation (a small
affine plus a smooth displacement field), contrast (gamma), brightness, bias field and noise,
rendered straight onto the OASIS slice set's frame (brainvq.data.space.frame: the same pixels,
levels and millimetres as OASIS's 32 slices, measured by registration), so that a demo run and
an OASIS run mean the same anatomy by level k and answer for a scan in the same way. Given a
range of heights (`z_range_mm`, e.g. the whole brain from the brain stem to the vertex), the
cohort is rendered on every level of the same grid in that range instead.

Outside the brain the slices are dressed like the OASIS PNGs: dark CSF, then a bright rim (what
OASIS's skull stripping left of the meninges) and a faint halo, then black. The distances follow
OASIS's mean intensity profile measured against the registered template's outline (dark up to
about 3 mm outside it, the rim peaking about 7 mm out, faint beyond 14 mm).

For trying the tool and for tests, not for science.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brainvq.data.builder import SliceBuilder, SlicePart
from brainvq.data.decode import DecodePlan, collect
from brainvq.data.sliceset import SPLITS, SliceSet
from brainvq.data.space.frame import Frame
from brainvq.data.space.run_space import frame_for_source
from brainvq.data.space.template import BRAIN_CENTRE_MM, load_reference

# The brain's outline: the template's brain mask blurred and thresholded, which closes the
# sulci at the surface and adds about a millimetre of CSF, like OASIS's smooth outline.
ENVELOPE_SIGMA_MM = 2.0
ENVELOPE_LEVEL = 0.3
# Outside the outline: dark CSF, then a bright rim peaking RIM_MM out with a Gaussian profile,
# then a faint halo (OASIS's profile, see the module docstring).
RIM_MM = 7.0
RIM_SIGMA_MM = 1.6
CSF_LEVEL = 0.1
HALO_MM = (9.0, 16.0)
# The template is an average of 152 brains, so its sulci are washed out; an unsharp mask
# (amount, radius in mm) brings back the dark sulcal lines that single OASIS subjects show.
SHARPEN = (1.0, 1.5)
Z_MARGIN_MM = 12.0  # template planes kept beyond the frame's band, for the deformations


@dataclass(frozen=True)
class DemoSettings:
    """Ranges of the per-subject random variation (each value drawn uniformly).

    The axial variation (z_shift_mm, z_warp_mm) is small because OASIS is atlas-registered: its
    levels lie within 0.8-1.7 mm (one standard deviation over subjects, measured with the frame)
    of the table's heights, and a level classifier trained on 150 real OASIS subjects places
    84-96% (across runs) of real validate slices within 2 levels of their own."""

    rotate_deg: float = 5.0
    scale: float = 0.06
    aspect: float = 0.04
    shift_mm: float = 3.0
    z_shift_mm: float = 1.0
    warp_mm: float = 2.5
    z_warp_mm: float = 1.0
    warp_grid: int = 5
    gamma: tuple[float, float] = (1.0, 1.6)
    brightness: tuple[float, float] = (0.34, 0.48)
    rim: tuple[float, float] = (0.6, 0.95)
    halo: tuple[float, float] = (0.0, 0.05)
    bias: float = 0.12
    noise: tuple[float, float] = (0.005, 0.02)


@dataclass(frozen=True)
class Template:
    """The skull-stripped template around the frame's band, prefiltered for the working size."""

    t1: np.ndarray  # (X, Y, Z) float32 in [0, 1], zero outside the brain's outline
    distance: np.ndarray  # (X, Y, Z) float32 signed mm from the outline (> 0 outside)
    inverse: np.ndarray  # (4, 4) MNI mm -> voxel of t1 and distance


@functools.lru_cache(maxsize=2)
def load_template(size: int, frame: Frame) -> Template:
    """The template's planes that the frame's band (plus a margin for deformations) needs,
    sharpened and, when a pixel spans more than a millimetre, blurred in-plane so that sampling
    it does not alias."""
    reference = load_reference()
    z = frame.points(size, [0, frame.n_levels - 1])[2]
    affine = reference.affine
    k_lo = max(0, math.floor(z.min() - Z_MARGIN_MM - affine[2, 3]))
    k_hi = min(reference.t1.shape[2], math.ceil(z.max() + Z_MARGIN_MM - affine[2, 3]) + 1)
    mask = reference.mask[:, :, k_lo:k_hi].astype(np.float32)
    t1 = reference.t1[:, :, k_lo:k_hi]
    envelope = (ndimage.gaussian_filter(mask, ENVELOPE_SIGMA_MM) > ENVELOPE_LEVEL).astype(
        np.float32
    )
    t1 = t1 / np.percentile(t1[mask > 0], 99.5)
    amount, radius = SHARPEN
    t1 = (t1 + amount * (t1 - ndimage.gaussian_filter(t1, radius))) * envelope
    sigma = [0.5 * math.sqrt(max(m**2 - 1.0, 0.0)) for m in frame.pixel_mm(size)]
    t1 = ndimage.gaussian_filter(t1, sigma=(sigma[0], sigma[1], 0.0))
    inside = envelope > 0
    distance = ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(inside)
    band = affine.copy()
    band[:3, 3] += affine[:3, 2] * k_lo
    return Template(
        np.clip(t1, 0.0, 1.0).astype(np.float32),
        distance.astype(np.float32),
        np.linalg.inv(band),
    )


def _bump_weights(n: int, grid: int) -> np.ndarray:
    """(n, grid) weights: Gaussian bumps one lattice spacing wide, rows summing to 1."""
    position = (np.arange(n) + 0.5) / n * grid - 0.5
    w = np.exp(-0.5 * (position[:, None] - np.arange(grid)[None, :]) ** 2)
    return w / w.sum(axis=1, keepdims=True)


def _smooth_field(rng: np.random.Generator, grid: int, shape: tuple[int, int, int]) -> np.ndarray:
    """A smooth random field over `shape` from a grid^3 lattice of uniform [-1, 1] values.

    Separable interpolation (three small matrix products), far cheaper than a 3D spline zoom.
    """
    coarse = rng.uniform(-1.0, 1.0, size=(grid, grid, grid)).astype(np.float32)
    wz, wx, wy = (_bump_weights(n, grid).astype(np.float32) for n in shape)
    field = np.einsum("ai,ijk->ajk", wz, coarse)  # (Z, g, g)
    field = np.einsum("bj,ajk->abk", wx, field)  # (Z, X, g)
    return np.einsum("ck,abk->abc", wy, field)  # (Z, X, Y)


def render_subject(
    template: Template, frame: Frame, size: int, rng: np.random.Generator, settings: DemoSettings
) -> np.ndarray:
    """One virtual subject on the frame: (frame.n_levels, size, size) uint8, level 0 lowest."""
    s = settings
    n_levels = frame.n_levels
    shape = (n_levels, size, size)
    points = frame.points(size, np.arange(n_levels))  # (3, L, S, S) MNI mm
    centre = np.asarray(BRAIN_CENTRE_MM)[:, None, None, None]
    z_shift = rng.uniform(-s.z_shift_mm, s.z_shift_mm)
    angle = math.radians(rng.uniform(-s.rotate_deg, s.rotate_deg))
    scale = 1.0 + rng.uniform(-s.scale, s.scale)
    sx = scale * (1.0 + rng.uniform(-s.aspect, s.aspect))
    sy = scale * (1.0 + rng.uniform(-s.aspect, s.aspect))
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = points[0] - centre[0], points[1] - centre[1]
    coords = np.empty((3, *shape), dtype=np.float64)  # template MNI mm seen at each pixel
    coords[0] = centre[0] + (cos * u - sin * v) / sx + rng.uniform(-s.shift_mm, s.shift_mm)
    coords[1] = centre[1] + (sin * u + cos * v) / sy + rng.uniform(-s.shift_mm, s.shift_mm)
    coords[2] = points[2] + z_shift
    coords[0] += s.warp_mm * _smooth_field(rng, s.warp_grid, shape)
    coords[1] += s.warp_mm * _smooth_field(rng, s.warp_grid, shape)
    coords[2] += s.z_warp_mm * _smooth_field(rng, s.warp_grid, shape)
    flat = coords.reshape(3, -1)
    vox = (template.inverse[:3, :3] @ flat + template.inverse[:3, 3:4]).reshape(coords.shape)
    t1 = ndimage.map_coordinates(template.t1, vox, order=1, mode="constant")
    # Signed distance from the outline in mm (> 0 outside), interpolated so edges are smooth.
    outside = ndimage.map_coordinates(template.distance, vox, order=1, mode="nearest")
    image = rng.uniform(*s.brightness) * np.power(np.clip(t1, 0.0, 1.0), rng.uniform(*s.gamma))
    image += ((outside > 0) & (outside < RIM_MM)) * CSF_LEVEL
    image += rng.uniform(*s.rim) * np.exp(-0.5 * ((outside - RIM_MM) / RIM_SIGMA_MM) ** 2)
    image += ((outside > HALO_MM[0]) & (outside <= HALO_MM[1])) * rng.uniform(*s.halo)
    image *= np.exp(s.bias * _smooth_field(rng, 3, shape))
    head = outside <= HALO_MM[1]
    image += head * rng.normal(0.0, rng.uniform(*s.noise), size=shape)
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def demo_frame(n_levels: int = 32, z_range_mm: tuple[float, float] | None = None) -> Frame:
    """The frame the demo cohort is rendered on: OASIS's band in n_levels levels, or every level
    of its grid between the z_range_mm heights (brainvq.data.space.run_space.spanning_frame)."""
    return frame_for_source("demo", n_levels, z_range_mm)[0]


@dataclass(frozen=True)
class SubjectTask:
    """One virtual subject to render."""

    index: int
    split: str
    size: int
    frame: Frame
    seed: int
    settings: DemoSettings


def render_task(task: SubjectTask) -> SlicePart:
    """A virtual subject's slices, level 0 to the frame's last level."""
    template = load_template(task.size, task.frame)
    rng = np.random.default_rng([task.seed, task.index])
    volume = render_subject(template, task.frame, task.size, rng, task.settings)
    subject = f"demo_{task.index:03d}"
    k = task.frame.n_levels
    return SlicePart(
        volume,
        [task.split] * k,
        [subject] * k,
        list(range(k)),
        [f"{subject}_slice_{level}" for level in range(k)],
    )


def demo_plan(
    size: int = 128,
    n_levels: int = 32,
    subjects: tuple[int, int, int] = (48, 8, 8),
    seed: int = 0,
    settings: DemoSettings | None = None,
    z_range_mm: tuple[float, float] | None = None,
) -> DecodePlan:
    """The demo cohort as decoding tasks, one per subject (`demo_000`...), split by subject
    (train, validate, test counts), on demo_frame(n_levels, z_range_mm). Subject i draws from
    a generator seeded with (seed, i), so subject i is the same whatever the other counts are."""
    if len(subjects) != 3 or any(n < 0 for n in subjects) or subjects[0] < 1:
        raise ValueError(
            f"demo subjects must be three counts (train >= 1, validate, test), got {subjects}"
        )
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    settings = settings or DemoSettings()
    frame = demo_frame(n_levels, z_range_mm)
    splits = [split for split, n in zip(SPLITS, subjects, strict=True) for _ in range(n)]
    return DecodePlan(
        decode=render_task,
        tasks=[
            SubjectTask(i, split, size, frame, seed, settings) for i, split in enumerate(splits)
        ],
        source="demo",
        description="building demo cohort",
        notes=("synthetic cohort from the MNI152 2009 template (nilearn): not for science",),
        splits_present=tuple(split for split, n in zip(SPLITS, subjects, strict=True) if n > 0),
        n_levels=frame.n_levels,
    )


def build_demo(
    size: int = 128,
    n_levels: int = 32,
    subjects: tuple[int, int, int] = (48, 8, 8),
    seed: int = 0,
    show_progress: bool = True,
    settings: DemoSettings | None = None,
    workers: int | None = None,
    z_range_mm: tuple[float, float] | None = None,
) -> SliceSet:
    """The demo cohort in memory (demo_plan; workers: as brainvq.data.decode.collect).
    Deterministic for (size, n_levels or z_range_mm, subjects, seed)."""
    plan = demo_plan(size, n_levels, subjects, seed, settings, z_range_mm)
    builder = SliceBuilder(size)
    collect(plan, builder, workers, show_progress)
    return builder.build(plan.source, splits_present=plan.splits_present)
