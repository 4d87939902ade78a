"""The demo cohort: virtual subjects made from the MNI152 2009 template that nilearn ships.

Each subject is the skull-stripped template under its own smooth random deformation (a small
affine plus a smooth displacement field), contrast (gamma), brightness, bias field and noise,
rendered straight into N axial slices at the working size.

The slices are framed like the OASIS PNGs: anterior on the right, left-right vertical, the
brain (with its rim) spanning about 76% of the frame's width and 62% of its height, a thin
bright rim around the brain (what OASIS's skull stripping leaves of the meninges) and a
black background. The 32 levels cover the same band as OASIS's 32 slices, from the top of
the thalamus and the third ventricle (slice 0) to the bodies of the lateral ventricles
(slice 31): MNI z = +6 mm to +26 mm, found by comparing template slices with the mean of
60 real OASIS subjects at levels 0, 8, 16, 24 and 31.

For trying the tool and for tests, not for science.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brainvq.data.builder import SliceBuilder
from brainvq.data.progress import progress
from brainvq.data.sliceset import SPLITS, SliceSet

# Band of axial levels in MNI millimetres (slice 0 -> Z_LOW_MM, slice N-1 -> Z_HIGH_MM).
Z_LOW_MM = 6.0
Z_HIGH_MM = 26.0
# Extent of the brain's outline at the middle of the band as a fraction of the frame. With
# the rim added, the cohort's mean bounding box then matches OASIS's at 128x128 (97 x 80 px,
# mean over 148 real slices: anterior-posterior along columns, left-right along rows).
# OASIS brains (Talairach space) are wider for their length than the template: two scales.
BRAIN_LENGTH_FRACTION = 0.73
BRAIN_WIDTH_FRACTION = 0.59
# The brain's outline: the template's brain mask blurred and thresholded, which closes the
# sulci at the surface and adds about a millimetre of CSF, like OASIS's smooth outline.
ENVELOPE_SIGMA_MM = 2.0
ENVELOPE_LEVEL = 0.3
# Outside the outline: dark CSF, then a bright rim (what skull stripping left of the
# meninges in OASIS) peaking RIM_MM out with a Gaussian profile, then a faint halo.
RIM_MM = 3.0
RIM_SIGMA_MM = 1.3
CSF_LEVEL = 0.1
HALO_MM = (5.0, 11.0)
# The template is an average of 152 brains, so its sulci are washed out; an unsharp mask
# (amount, radius in mm) brings back the dark sulcal lines that single OASIS subjects show.
SHARPEN = (1.0, 1.5)


@dataclass(frozen=True)
class DemoSettings:
    """Ranges of the per-subject random variation (each value drawn uniformly).

    The axial variation (z_shift_mm, z_warp_mm) is small because OASIS is atlas-registered: a
    level classifier trained on 150 real OASIS subjects places 84-96% (across runs) of real
    validate slices within 2 levels (0.65 mm each) of their own. With +-1 mm the demo's real
    test slices score 94% on the same measure; with the former +-4 mm shift and 2.5 mm warp
    they scored 41%, so "slice k" meant no anatomical level and level accuracy could not be
    measured.
    """

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
    """The skull-stripped template band, prefiltered for the working size."""

    t1: np.ndarray  # (X, Y, Z) float32 in [0, 1], zero outside the brain's outline
    distance: np.ndarray  # (X, Y, Z) float32 signed mm from the outline (> 0 outside)
    z0_mm: float  # MNI z of voxel plane 0
    centre: np.ndarray  # (2,) voxel x, y of the brain's centre at the middle of the band
    mm_per_px: np.ndarray  # (2,) template millimetres per output pixel along rows (x), columns (y)


@functools.lru_cache(maxsize=2)
def load_template(size: int, z_margin_mm: float = 12.0) -> Template:
    """Load nilearn's MNI152 2009 T1 template and brain mask (1 mm, shipped with nilearn).

    Only the band of levels needed (plus a margin for deformations) is kept. When an
    output pixel spans more than a millimetre, the template is blurred in-plane so that
    sampling it does not alias.
    """
    from nilearn import datasets

    t1_img = datasets.load_mni152_template(resolution=1)
    mask_img = datasets.load_mni152_brain_mask(resolution=1)
    affine = t1_img.affine
    if not np.allclose(affine[:3, :3], np.eye(3)):
        raise ValueError(
            f"unexpected MNI152 template affine {affine.tolist()}: expected 1 mm RAS voxels"
        )
    k_lo = max(0, math.floor(Z_LOW_MM - z_margin_mm - affine[2, 3]))
    k_hi = min(t1_img.shape[2], math.ceil(Z_HIGH_MM + z_margin_mm - affine[2, 3]) + 1)
    mask = (np.asarray(mask_img.dataobj[:, :, k_lo:k_hi]) > 0.5).astype(np.float32)
    t1 = np.asarray(t1_img.dataobj[:, :, k_lo:k_hi], dtype=np.float32)
    envelope = (ndimage.gaussian_filter(mask, ENVELOPE_SIGMA_MM) > ENVELOPE_LEVEL).astype(
        np.float32
    )
    t1 = t1 / np.percentile(t1[mask > 0], 99.5)
    amount, radius = SHARPEN
    t1 = (t1 + amount * (t1 - ndimage.gaussian_filter(t1, radius))) * envelope
    z_mid = round((Z_LOW_MM + Z_HIGH_MM) / 2 - affine[2, 3]) - k_lo
    xs, ys = np.nonzero(envelope[:, :, z_mid])
    extent = np.array([xs.max() - xs.min() + 1, ys.max() - ys.min() + 1], dtype=float)
    mm_per_px = extent / (np.array([BRAIN_WIDTH_FRACTION, BRAIN_LENGTH_FRACTION]) * size)
    sigma = [0.5 * math.sqrt(max(m**2 - 1.0, 0.0)) for m in mm_per_px]
    t1 = ndimage.gaussian_filter(t1, sigma=(sigma[0], sigma[1], 0.0))
    centre = np.array([(xs.min() + xs.max()) / 2.0, (ys.min() + ys.max()) / 2.0])
    inside = envelope > 0
    distance = ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(inside)
    return Template(
        np.clip(t1, 0.0, 1.0).astype(np.float32),
        distance.astype(np.float32),
        float(affine[2, 3] + k_lo),
        centre,
        mm_per_px,
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
    template: Template, n_levels: int, size: int, rng: np.random.Generator, settings: DemoSettings
) -> np.ndarray:
    """One virtual subject: (n_levels, size, size) uint8, slice 0 lowest."""
    s = settings
    shape = (n_levels, size, size)
    # Output grid in millimetres around the brain centre: rows -> x, columns -> y.
    centred = np.arange(size) - (size - 1) / 2.0
    u, v = np.meshgrid(
        centred * template.mm_per_px[0], centred * template.mm_per_px[1], indexing="ij"
    )
    levels = np.linspace(Z_LOW_MM, Z_HIGH_MM, n_levels) + rng.uniform(-s.z_shift_mm, s.z_shift_mm)
    angle = math.radians(rng.uniform(-s.rotate_deg, s.rotate_deg))
    scale = 1.0 + rng.uniform(-s.scale, s.scale)
    sx = scale * (1.0 + rng.uniform(-s.aspect, s.aspect))
    sy = scale * (1.0 + rng.uniform(-s.aspect, s.aspect))
    cos, sin = math.cos(angle), math.sin(angle)
    x = template.centre[0] + (cos * u - sin * v) / sx + rng.uniform(-s.shift_mm, s.shift_mm)
    y = template.centre[1] + (sin * u + cos * v) / sy + rng.uniform(-s.shift_mm, s.shift_mm)
    coords = np.empty((3, *shape), dtype=np.float32)
    coords[0] = x[None] + s.warp_mm * _smooth_field(rng, s.warp_grid, shape)
    coords[1] = y[None] + s.warp_mm * _smooth_field(rng, s.warp_grid, shape)
    coords[2] = (levels - template.z0_mm)[:, None, None] + s.z_warp_mm * _smooth_field(
        rng, s.warp_grid, shape
    )
    t1 = ndimage.map_coordinates(template.t1, coords, order=1, mode="constant")
    # Signed distance from the outline in mm (> 0 outside), interpolated so edges are smooth.
    outside = ndimage.map_coordinates(template.distance, coords, order=1, mode="nearest")
    image = rng.uniform(*s.brightness) * np.power(np.clip(t1, 0.0, 1.0), rng.uniform(*s.gamma))
    image += ((outside > 0) & (outside < RIM_MM)) * CSF_LEVEL
    image += rng.uniform(*s.rim) * np.exp(-0.5 * ((outside - RIM_MM) / RIM_SIGMA_MM) ** 2)
    image += ((outside > HALO_MM[0]) & (outside <= HALO_MM[1])) * rng.uniform(*s.halo)
    image *= np.exp(s.bias * _smooth_field(rng, 3, shape))
    head = outside <= HALO_MM[1]
    image += head * rng.normal(0.0, rng.uniform(*s.noise), size=shape)
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def build_demo(
    size: int = 128,
    n_levels: int = 32,
    subjects: tuple[int, int, int] = (48, 8, 8),
    seed: int = 0,
    show_progress: bool = True,
    settings: DemoSettings | None = None,
) -> SliceSet:
    """The demo cohort: subjects `demo_000`... split by subject (train, validate, test counts).

    Deterministic for (size, n_levels, subjects, seed): subject i draws from a generator
    seeded with (seed, i), so subject i is the same whatever the other counts are.
    """
    if len(subjects) != 3 or any(n < 0 for n in subjects) or subjects[0] < 1:
        raise ValueError(
            f"demo subjects must be three counts (train >= 1, validate, test), got {subjects}"
        )
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    settings = settings or DemoSettings()
    template = load_template(size)
    builder = SliceBuilder(size)
    builder.note("synthetic cohort from the MNI152 2009 template (nilearn): not for science")
    splits = [split for split, n in zip(SPLITS, subjects, strict=True) for _ in range(n)]
    for i in progress(range(len(splits)), len(splits), "building demo cohort", show_progress):
        subject = f"demo_{i:03d}"
        volume = render_subject(
            template, n_levels, size, np.random.default_rng([seed, i]), settings
        )
        for k in range(n_levels):
            builder.add(volume[k], splits[i], subject, k, f"{subject}_slice_{k}")
    present = tuple(split for split, n in zip(SPLITS, subjects, strict=True) if n > 0)
    return builder.build("demo", splits_present=present)
