"""Affine registration of a T1 volume to the reference (SimpleITK, Mattes mutual information).

Why SimpleITK and this recipe (benchmarks/bench_registration.py measures it; docs/scans.md,
"Measured", has the tables, ANTsPy's beside it): ANTsPy's `registration(type_of_transform=
"Affine")` was a little more precise where both found the brain, but several times slower, and
it lost a volume with a skull (its start, the centres of mass, lies centimetres below the brain
when the neck is in the field of view); ANTsPy also pins NumPy and SciPy below the versions
brainvq uses. The recipe:

1. the volume is block-averaged to about 2 mm and scaled by its 99th percentile;
2. starts that do not trust the field of view: the centre of mass of the foreground at 8 mm
   (right for a head box or a skull-stripped brain), and the top of the head (the foreground's
   highest point along the scanner's superior axis, with the centre of the 6 cm of foreground
   below it): right when the neck and shoulders pull the centre of mass 5-10 cm below the brain.
   Around each, every translation of a grid (x +-10, y +-30, z -40..+30 mm in 10 mm steps) is
   scored by mutual information against the template blurred to 8 mm (a wide basin: the score
   falls by half only ~15 mm from the truth);
3. the best starts at least 15 mm apart are refined as similarity transforms (rigid and one
   scale: a child's head or a small brain is reached from a start at the template's size) at
   8 mm; the best one seeds
4. a 12-parameter affine refined at 4 mm and then 2 mm;
5. when that fits poorly (mutual information above `wide_search_above_mi`) or finds no brain
   (above FOUND_BRAIN_MI), a wide search: every translation over the foreground's bounding box
   in 15 mm steps, each with the head pitched -20, 0 and +20 degrees (heads lie tilted in
   sagittal acquisitions with the neck; thousands of starts, ranked first by a vectorised
   histogram MI, the best `exact_starts` of them scored by the same Mattes MI as step 2: ~10 s
   where scoring all by SimpleITK took ~150), then steps 3-4 from its best starts; the better fit
   stands. Only when no search finds a brain is the volume refused, and the refusal names what
   was tried (`Registration.tried`).

The metric samples only the template's brain mask dilated by `mask_margin_mm`, so a skull, a
neck or a cropped field of view in the volume counts only where the template has brain. Every
orientation code, voxel size and oblique acquisition enters through the affine: the volume is
registered in its own world millimetres, never resampled to an orientation first, and the world
origin (the scanner's, or a corner of the volume) plays no part.

The result maps reference (MNI) millimetres to the volume's world millimetres (`to_scan`): what
resampling the volume onto the reference needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brainvq.data.space.template import BRAIN_CENTRE_MM, Reference, load_reference

MIN_EXTENT_MM = 40.0  # a smaller field of view cannot hold the brain's band of levels
# Mattes mutual information of a registration that found a brain: about -0.5 to -1.8 for the
# synthetic T1 scans of benchmarks/bench_scans.py (any contrast, a skull or not, a neck);
# noise or a volume of another body part stays near 0
FOUND_BRAIN_MI = -0.15


@dataclass(frozen=True)
class RegistrationSettings:
    """How the registration searches; defaults measured in benchmarks/bench_registration.py."""

    working_mm: float = 2.0  # the volume is block-averaged to about this before registering
    grid_x_mm: tuple[float, ...] = (-10.0, 0.0, 10.0)
    grid_y_mm: tuple[float, ...] = (-30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0)
    grid_z_mm: tuple[float, ...] = (-40.0, -30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0)
    starts: int = 3  # best grid points (at least start_separation_mm apart) refined as rigid
    start_separation_mm: float = 15.0
    top_to_centre_mm: float = 70.0  # from the top of a head (or a brain) down to its centre
    top_slab_mm: float = 60.0  # the foreground below the top whose centre gives x and y
    wide_step_mm: float = 15.0  # the wide search's translation grid (step 5)
    wide_pitch_deg: tuple[float, ...] = (-20.0, 0.0, 20.0)
    # more starts than this are ranked by a vectorised histogram MI first, and only this many
    # best scored by SimpleITK's Mattes MI (its ~10 ms a start made the wide search minutes)
    exact_starts: int = 400
    # a fit this poor searches widely too (step 5); a T1 that fits scores -0.9 to -1.8 here
    wide_search_above_mi: float = -0.5
    mask_margin_mm: float = 3.0  # the metric's region: the template brain mask dilated by this
    histogram_bins: int = 32
    fine_sampling: float = 0.15  # share of the mask's voxels sampled at the finest level
    iterations: int = 100
    seed: int = 1  # the metric's random sampling


@dataclass(frozen=True)
class Registration:
    """to_scan: (4, 4) reference (MNI) mm -> the volume's world mm; metric: the final Mattes
    mutual information (negative; lower is better, about -0.5 to -1.0 for a T1 that fits);
    scales: (3,) singular values of the linear part (the brain's size relative to the template);
    seconds: wall time; tried: the searches made, in order (steps 2 and 5 of the module
    docstring), e.g. ("centre of mass and head top: 336 starts", "wide: 1,200 starts")."""

    to_scan: np.ndarray
    metric: float
    scales: np.ndarray
    seconds: float
    tried: tuple[str, ...] = ()

    @property
    def found_brain(self) -> bool:
        return self.metric <= FOUND_BRAIN_MI

    @property
    def to_reference(self) -> np.ndarray:
        """(4, 4) the volume's world mm -> reference mm."""
        return np.linalg.inv(self.to_scan)


def _sitk():
    import SimpleITK as sitk

    return sitk


def shear_mm(affine: np.ndarray, shape: tuple[int, ...]) -> float:
    """How far (mm, at the far corner of the field of view) `affine` places a voxel from where
    the nearest affine without shear would: SimpleITK images cannot shear."""
    linear = affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    u, _, vt = np.linalg.svd(linear / spacing)
    corner = np.asarray(shape[:3], dtype=np.float64) - 1
    return float(np.linalg.norm((linear - (u @ vt) * spacing) @ corner))


def sitk_image(data: np.ndarray, affine: np.ndarray):
    """A SimpleITK image of `data` (X, Y, Z) whose physical space is the NIfTI world (RAS mm),
    with the nearest direction without shear (check `shear_mm` first)."""
    sitk = _sitk()
    linear = affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    u, _, vt = np.linalg.svd(linear / spacing)
    direction = u @ vt  # the nearest orthonormal matrix (polar decomposition)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data, np.float32).T))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in affine[:3, 3]])
    image.SetDirection([float(v) for v in direction.ravel()])
    return image


def block_average(data: np.ndarray, affine: np.ndarray, target_mm: float):
    """Average blocks of voxels so each axis is about target_mm (never finer than it was).

    Returns (data (x, y, z) float32, its affine)."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    f = np.maximum(1, np.round(target_mm / spacing)).astype(int)
    if (f == 1).all():
        return np.asarray(data, np.float32), affine
    shape = (np.array(data.shape) // f) * f
    if (shape == 0).any():
        f = np.where(shape == 0, 1, f)
        shape = (np.array(data.shape) // f) * f
    cut = data[: shape[0], : shape[1], : shape[2]]
    blocks = cut.reshape(shape[0] // f[0], f[0], shape[1] // f[1], f[1], shape[2] // f[2], f[2])
    out = blocks.mean(axis=(1, 3, 5), dtype=np.float32)
    new = affine.copy()
    new[:3, :3] = affine[:3, :3] * f
    new[:3, 3] = affine[:3, :3] @ ((f - 1) / 2) + affine[:3, 3]
    return out, new


_FIXED: dict[tuple[int, float, float], tuple] = {}


def _fixed(reference: Reference, factor: int, sigma_mm: float, margin_mm: float):
    """The template at `factor` mm, blurred, with the metric's mask (cached per process)."""
    key = (factor, sigma_mm, margin_mm)
    if key not in _FIXED:
        sitk = _sitk()
        blurred = ndimage.gaussian_filter(reference.t1, max(sigma_mm, 0.5 * factor))
        near = reference.signed_distance() <= margin_mm
        affine = reference.affine.copy()
        affine[:3, :3] *= factor
        step = slice(None, None, factor)
        image = sitk_image(blurred[step, step, step], affine)
        mask = sitk_image(near[step, step, step].astype(np.float32), affine)
        _FIXED[key] = (image, sitk.Cast(mask, sitk.sitkUInt8))
    return _FIXED[key]


def _method(settings: RegistrationSettings, mask, sampling: float):
    sitk = _sitk()
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(settings.histogram_bins)
    if sampling < 1:
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(sampling, seed=settings.seed)
    else:
        method.SetMetricSamplingStrategy(method.NONE)
    method.SetMetricFixedMask(mask)
    method.SetInterpolator(sitk.sitkLinear)
    return method


def _matrix(transform) -> np.ndarray:
    """(4, 4) of a SimpleITK matrix transform with a centre."""
    a = np.array(transform.GetMatrix()).reshape(3, 3)
    c = np.array(transform.GetCenter())
    out = np.eye(4)
    out[:3, :3] = a
    out[:3, 3] = np.array(transform.GetTranslation()) + c - a @ c
    return out


def register_volume(
    data: np.ndarray,
    affine: np.ndarray,
    settings: RegistrationSettings | None = None,
    threads: int | None = None,
) -> Registration:
    """Register a T1 volume (data (X, Y, Z), finite, affine (4, 4) voxel -> world mm) to the
    reference; steps 1-4 of the module docstring. ValueError when the volume has no signal."""
    sitk = _sitk()
    settings = settings or RegistrationSettings()
    start_time = time.perf_counter()
    extent = np.asarray(data.shape[:3]) * np.linalg.norm(affine[:3, :3], axis=0)
    if extent.min() < MIN_EXTENT_MM:
        raise ValueError(
            f"its field of view is {' x '.join(f'{e:.0f}' for e in extent)} mm; expected a brain "
            f"volume at least {MIN_EXTENT_MM:.0f} mm along every axis"
        )
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    if threads:  # SimpleITK's setting is the process's: put back afterwards
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        return _register(data, affine, settings, start_time)
    except RuntimeError as e:  # SimpleITK's errors (e.g. an image too small for a filter)
        raise ValueError(f"SimpleITK could not register it ({' '.join(str(e).split())})") from None
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _pyramid(data, affine, settings: RegistrationSettings) -> tuple[dict, np.ndarray]:
    """Step 1: the volume at 1x, 2x and 4x working_mm as SimpleITK images (scaled by its 99th
    percentile, the coarser ones blurred), and the world mm (3, M) of its foreground at 4x."""
    small, small_affine = block_average(data, affine, settings.working_mm)
    positive = small[small > 0]
    if positive.size == 0:
        raise ValueError("the volume has no positive voxels to register")
    small = small / max(float(np.percentile(positive, 99)), 1e-12)
    mid, mid_affine = block_average(small, small_affine, 2 * settings.working_mm)
    coarse, coarse_affine = block_average(small, small_affine, 4 * settings.working_mm)
    moving = {  # pyramid level (x working_mm) -> SimpleITK image
        1: sitk_image(small, small_affine),
        2: sitk_image(ndimage.gaussian_filter(mid, 0.5), mid_affine),
        4: sitk_image(ndimage.gaussian_filter(coarse, 1.0), coarse_affine),
    }
    foreground = np.argwhere(coarse > 0.15)
    if len(foreground) == 0:
        raise ValueError("the volume has no foreground to register")
    points = coarse_affine[:3, :3] @ foreground.T + coarse_affine[:3, 3:4]  # (3, M) world mm
    return moving, points


def _register(data, affine, settings: RegistrationSettings, start_time: float) -> Registration:
    reference = load_reference()
    moving, points = _pyramid(data, affine, settings)
    f = int(round(settings.working_mm))
    fixed8, mask8 = _fixed(reference, 4 * f, 8.0, settings.mask_margin_mm)

    # 2. translations on a grid around the centre of mass and the head's top, scored at 8 mm
    grid = np.array(
        [
            (x, y, z)
            for x in settings.grid_x_mm
            for y in settings.grid_y_mm
            for z in settings.grid_z_mm
        ]
    )
    bases = _start_points(points, settings) - np.asarray(BRAIN_CENTRE_MM)
    shifts = (bases[:, None, :] + grid[None]).reshape(-1, 3)
    scored = _score_starts(fixed8, mask8, moving[4], settings, shifts, pitches=(0.0,))
    tried = [f"centre of mass and head top: {len(scored)} starts"]
    best = _refine(reference, fixed8, mask8, moving, settings, scored, f)

    # 5. a wide search when that fit poorly
    if best[0] > settings.wide_search_above_mi:
        lo, hi = points.min(axis=1), points.max(axis=1)
        axes = [np.arange(a, b + 1e-6, settings.wide_step_mm) for a, b in zip(lo, hi, strict=True)]
        wide = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        wide = wide - np.asarray(BRAIN_CENTRE_MM)
        scored = _score_starts(fixed8, mask8, moving[4], settings, wide, settings.wide_pitch_deg)
        n_wide = len(wide) * len(settings.wide_pitch_deg)
        tried.append(f"a wide search over the field of view: {n_wide} starts")
        again = _refine(reference, fixed8, mask8, moving, settings, scored, f)
        best = min(best, again, key=lambda b: b[0])
    metric, to_scan = best
    scales = np.linalg.svd(to_scan[:3, :3], compute_uv=False)
    return Registration(to_scan, metric, scales, time.perf_counter() - start_time, tuple(tried))


def _start_points(points: np.ndarray, settings: RegistrationSettings) -> np.ndarray:
    """(2, 3) world mm where the brain's centre may be (step 2): the foreground's centre of mass,
    and below the foreground's top along the scanner's superior axis (world +z), at the centre
    of the top_slab_mm of foreground under it."""
    com = points.mean(axis=1)
    top = points[2].max()
    slab = points[:, points[2] >= top - settings.top_slab_mm]
    from_top = np.array([*slab[:2].mean(axis=1), top - settings.top_to_centre_mm])
    return np.stack([com, from_top])


def _pitched(pitch_deg: float, shift: np.ndarray):
    """A rigid transform about the brain's centre: the head pitched (about x), then shifted."""
    sitk = _sitk()
    rigid = sitk.Euler3DTransform()
    rigid.SetCenter([float(c) for c in BRAIN_CENTRE_MM])
    rigid.SetRotation(float(np.radians(pitch_deg)), 0.0, 0.0)
    rigid.SetTranslation([float(v) for v in shift])
    return rigid


def _score_starts(fixed, mask, moving, settings, shifts: np.ndarray, pitches) -> list:
    """[(metric, pitch, shift)] of every start, best (lowest) first: SimpleITK's Mattes mutual
    information of each. Beyond `settings.exact_starts` starts (the wide search's thousands),
    all are ranked by `_histogram_mi` first (vectorised, ~50x faster) and only its best
    `exact_starts` are scored by SimpleITK, so what steps 3-4 refine is chosen by the same
    metric as before."""
    starts = [(pitch, shift) for pitch in pitches for shift in shifts]
    if len(starts) > settings.exact_starts:
        ranked = _histogram_mi(fixed, mask, moving, settings, shifts, pitches)
        starts = [starts[i] for i in np.argsort(ranked, kind="stable")[: settings.exact_starts]]
    scorer = _method(settings, mask, 1.0)
    scored = []
    for pitch, shift in starts:
        scorer.SetInitialTransform(_pitched(pitch, shift))
        scored.append((scorer.MetricEvaluate(fixed, moving), pitch, shift))
    scored.sort(key=lambda s: s[0])
    return scored


def _voxels(image) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(array (X, Y, Z), origin, spacing, direction (3, 3)) of a SimpleITK image."""
    sitk = _sitk()
    array = sitk.GetArrayFromImage(image).T
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return array, np.array(image.GetOrigin()), np.array(image.GetSpacing()), direction


def _histogram_mi(fixed, mask, moving, settings, shifts: np.ndarray, pitches) -> np.ndarray:
    """An approximation of `_score_starts`' metric for every (pitch, shift) in its order: minus
    the mutual information of the joint histogram (settings.histogram_bins) of the template's
    values inside `mask` and the moving image's values there (linear interpolation; points
    outside the moving image left out), for all shifts at once. Mattes' is the same quantity
    with smooth (B-spline) histogram bins: the two rank starts alike."""
    bins = settings.histogram_bins
    f, f_origin, f_spacing, f_direction = _voxels(fixed)
    inside = _voxels(mask)[0] > 0
    index = np.argwhere(inside).astype(np.float64)
    points = f_origin + (index * f_spacing) @ f_direction.T  # (N, 3) world mm
    values = f[inside]
    span = max(float(values.max() - values.min()), 1e-12)
    f_bin = np.clip(((values - values.min()) / span * bins).astype(np.int64), 0, bins - 1)
    m, m_origin, m_spacing, m_direction = _voxels(moving)
    m_low, m_span = float(m.min()), max(float(m.max() - m.min()), 1e-12)
    centre = np.asarray(BRAIN_CENTRE_MM, dtype=np.float64)
    to_index = m_direction.T / m_spacing[:, None]  # world offset -> moving index offset
    offsets = np.asarray(shifts, dtype=np.float64) @ to_index.T  # (S, 3) the shifts, in index
    out = []
    chunk = max(1, 2_000_000 // max(len(points), 1))
    for pitch in pitches:
        a = np.radians(pitch)
        rotation = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        base = ((points - centre) @ rotation.T + centre - m_origin) @ to_index.T  # (N, 3)
        for start in range(0, len(offsets), chunk):
            where = base[None] + offsets[start : start + chunk, None]  # (s, N, 3)
            sampled = ndimage.map_coordinates(
                m, where.reshape(-1, 3).T, order=1, mode="constant", cval=np.nan
            ).reshape(len(where), len(points))
            valid = ~np.isnan(sampled)
            m_bin = np.clip(
                ((np.nan_to_num(sampled) - m_low) / m_span * bins).astype(np.int64), 0, bins - 1
            )
            which = np.arange(len(where))[:, None] * bins * bins + f_bin[None] * bins + m_bin
            joint = np.bincount(which[valid], minlength=len(where) * bins * bins)
            joint = joint.reshape(len(where), bins, bins).astype(np.float64)
            total = np.maximum(joint.sum(axis=(1, 2), keepdims=True), 1.0)
            p = joint / total
            px, py = p.sum(axis=2, keepdims=True), p.sum(axis=1, keepdims=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                terms = np.where(p > 0, p * np.log(p / (px * py)), 0.0)
            out.append(-terms.sum(axis=(1, 2)))
    return np.concatenate(out)


def _distinct(scored: list, n: int, separation_mm: float) -> list:
    """The n best starts, each at least separation_mm from those before it (or of another
    pitch)."""
    chosen = []
    for start in scored:
        if all(
            start[1] != c[1] or np.linalg.norm(start[2] - c[2]) >= separation_mm for c in chosen
        ):
            chosen.append(start)
            if len(chosen) == n:
                break
    return chosen


def _refine(reference, fixed8, mask8, moving, settings, scored: list, f: int):
    """Steps 3-4 from the best distinct starts: (final metric, to_scan (4, 4)). The transform
    object is a Similarity3DTransform, its GetMatrix includes the scale."""
    sitk = _sitk()
    best = None
    for _, pitch, shift in _distinct(scored, settings.starts, settings.start_separation_mm):
        rigid = _pitched(pitch, shift)
        similarity = sitk.Similarity3DTransform()  # rigid and one scale: heads of any size
        similarity.SetCenter(rigid.GetCenter())
        similarity.SetMatrix(rigid.GetMatrix())
        similarity.SetTranslation(rigid.GetTranslation())
        method = _method(settings, mask8, 1.0)
        method.SetOptimizerAsRegularStepGradientDescent(4.0, 0.2, settings.iterations, 0.7)
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetInitialTransform(similarity, inPlace=True)
        method.Execute(fixed8, moving[4])
        if best is None or method.GetMetricValue() < best[0]:
            best = (method.GetMetricValue(), similarity)
    transform = sitk.AffineTransform(3)
    transform.SetCenter(best[1].GetCenter())
    transform.SetMatrix(best[1].GetMatrix())
    transform.SetTranslation(best[1].GetTranslation())
    metric = float("nan")
    for level, sigma, sampling in ((2, 4.0, 1.0), (1, 0.0, settings.fine_sampling)):
        fixed, mask = _fixed(reference, level * f, sigma, settings.mask_margin_mm)
        method = _method(settings, mask, sampling)
        method.SetOptimizerAsRegularStepGradientDescent(2.0, 0.02, settings.iterations, 0.7)
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetInitialTransform(transform, inPlace=True)
        method.Execute(fixed, moving[level])
        metric = float(method.GetMetricValue())
    return metric, _matrix(transform)
