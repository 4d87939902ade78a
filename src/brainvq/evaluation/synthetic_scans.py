"""Scans as users have them, made from the reference with the truth known: for measuring, not
for training.

A synthetic subject is nilearn's MNI152 template (sharpened as the demo cohort's, since an
average of 152 brains is blurrier than one subject), optionally under a smooth random deformation
(the demo cohort's kind of variation, in 3D), optionally inside a synthetic head (CSF, skull
tables and marrow, scalp muscle and fat, a neck and two eyes, built from the distance to the
brain mask: a crude head, but one the registration never sees as a template), optionally with
3D lesions, and then acquired: a random pose (rotation, anisotropic scale, shift, a scanner
origin far from the brain), an orientation code (RAS, LPS, LAS, permuted axes), voxel sizes
(1 mm, 0.9 mm, thick 5 mm slices averaged over their thickness), a field of view cropped or
padded, a contrast curve, a bias field, Rician noise and an arbitrary intensity scale.

The truth comes with it: `to_scan` (reference mm -> scan world mm, the affine part),
the deformation, the brain mask and the lesion mask in the scan's voxels. Nothing here is used by
brainvq's own pipeline, and its lesions are not the kinds real scans have (which are unknown
here): they measure, they must not be tuned to.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainvq.data.demo import SHARPEN
from brainvq.data.space.template import BRAIN_CENTRE_MM, Reference, load_reference

ORIENTATIONS = ("RAS", "LPS", "LAS", "PIR", "ASL", "SRA", "ILP")
_AXES = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
LESION_KINDS = ("ellipsoid", "blob", "ring", "cluster")
SUB_SAMPLES = 5  # samples across a thick voxel's thickness


@dataclass(frozen=True)
class Acquisition:
    """How one scan is made (every value drawn by `random_acquisition`)."""

    orientation: str = "RAS"
    voxel_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    oblique_deg: float = 0.0  # the voxel grid itself turned about z
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    crop_mm: tuple[float, ...] = (0.0,) * 6  # per side (low x, high x, ...), < 0 pads
    skull: bool = False
    warp_mm: float = 0.0  # smooth deformation amplitude (0: the template's own anatomy)
    gamma: float = 1.0
    bias: float = 0.0  # log-amplitude of a smooth multiplicative field
    noise: float = 0.0  # Rician, as a share of white matter
    intensity_scale: float = 1000.0
    invert: bool = False  # an inverted T1 (a different contrast altogether)


@dataclass(frozen=True)
class Lesion:
    """A lesion in reference mm: kind, centre (3,), radius mm, intensity relative to white
    matter (< 1 hypo-, > 1 hyperintense)."""

    kind: str
    centre: tuple[float, float, float]
    radius_mm: float
    intensity: float


@dataclass
class SyntheticScan:
    """image: the NIfTI scan; to_scan: (4, 4) reference mm -> scan world mm (the affine part of
    the truth); brain, lesion: (scan shape) bool truth in the scan's voxels; lesions: what was
    planted; acquisition: how."""

    image: nib.Nifti1Image
    to_scan: np.ndarray
    brain: np.ndarray
    lesion: np.ndarray
    acquisition: Acquisition
    lesions: list[Lesion] = field(default_factory=list)
    warp: np.ndarray | None = None  # (3, gx, gy, gz) displacement lattice, mm

    def true_scan_points(self, points_mm: np.ndarray) -> np.ndarray:
        """(3, N) reference mm -> (3, N) scan world mm under the truth (deformation + affine)."""
        moved = self.subject_points(points_mm)
        return self.to_scan[:3, :3] @ moved + self.to_scan[:3, 3:4]

    def subject_points(self, points_mm: np.ndarray) -> np.ndarray:
        """(3, N) where template points lie in the subject: q with q - u(q) = p (fixed point)."""
        if self.warp is None:
            return points_mm
        q = points_mm.copy()
        for _ in range(6):
            q = points_mm + _lattice_displacement(self.warp, q)
        return q


def random_acquisition(rng: np.random.Generator, **fixed) -> Acquisition:
    """Random acquisition settings in the ranges of the module docstring; `fixed` sets some."""
    thick = rng.random() < 0.3
    voxel = [1.0, 1.0, 1.0] if rng.random() < 0.6 else [0.9, 0.9, 0.9]
    if thick:
        voxel[int(rng.integers(3))] = 5.0
    crop = rng.uniform(-15, 20, 6)
    values = dict(
        orientation=str(rng.choice(ORIENTATIONS)),
        voxel_mm=tuple(voxel),
        rotation_deg=tuple(rng.uniform(-15, 15, 3)),
        oblique_deg=float(rng.uniform(-10, 10)) if rng.random() < 0.3 else 0.0,
        scale=tuple(1 + rng.uniform(-0.1, 0.1, 3)),
        shift_mm=tuple(rng.uniform(-20, 20, 3) + rng.uniform(-60, 60, 3)),
        crop_mm=tuple(crop),
        skull=bool(rng.random() < 0.5),
        warp_mm=float(rng.uniform(1.0, 3.0)),
        gamma=float(rng.uniform(0.75, 1.35)),
        bias=float(rng.uniform(0.0, 0.3)),
        noise=float(rng.uniform(0.01, 0.04)),
        intensity_scale=float(rng.uniform(100, 4000)),
    )
    values.update(fixed)
    return Acquisition(**values)


def random_lesions(
    rng: np.random.Generator, n: int, z_range_mm: tuple[float, float] = (-4.0, 32.0)
) -> list[Lesion]:
    """n lesions of random kinds, 3-15 mm radius, hypo- or hyperintense, centred inside the brain
    (at least 3 mm from its edge) between the given heights."""
    reference = load_reference()
    depth = reference.signed_distance()
    inside = np.argwhere(depth < -3.0)
    mm = reference.affine[:3, :3] @ inside.T + reference.affine[:3, 3:4]  # (3, M)
    inside = inside[(mm[2] >= z_range_mm[0]) & (mm[2] <= z_range_mm[1])]
    out = []
    for _ in range(n):
        voxel = inside[rng.integers(len(inside))]
        centre = reference.affine[:3, :3] @ voxel + reference.affine[:3, 3]
        hypo = rng.random() < 0.6
        out.append(
            Lesion(
                kind=str(rng.choice(LESION_KINDS)),
                centre=tuple(float(c) for c in centre),
                radius_mm=float(rng.uniform(3.0, 15.0)),
                intensity=float(rng.uniform(0.15, 0.6) if hypo else rng.uniform(1.15, 1.45)),
            )
        )
    return out


def lesion_weight(lesion: Lesion, points_mm: np.ndarray, seed: int) -> np.ndarray:
    """(N,) in [0, 1]: how much of a lesion's tissue is at each reference point (3, N)."""
    rng = np.random.default_rng(seed)
    d = points_mm - np.asarray(lesion.centre)[:, None]  # (3, N)
    r = lesion.radius_mm
    axes = r * rng.uniform(0.6, 1.3, 3)
    rotation = _rotation(rng.uniform(-180, 180, 3))
    u = rotation.T @ d  # (3, N) in the lesion's own axes
    if lesion.kind in ("ellipsoid", "ring"):
        rho = np.sqrt(((u / axes[:, None]) ** 2).sum(axis=0))
    elif lesion.kind == "blob":
        norm = np.linalg.norm(u, axis=0) + 1e-9
        edge = np.ones_like(norm)
        for _ in range(4):  # a few random smooth lobes on the radius
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            edge += rng.uniform(0.1, 0.35) * (direction @ (u / norm)) ** 2
        rho = norm / (r * edge)
    else:  # cluster: 4-7 small ovoids around the centre
        rho = np.full(u.shape[1], np.inf)
        for _ in range(int(rng.integers(4, 8))):
            c = rng.normal(0, r * 0.6, 3)
            s = r * rng.uniform(0.2, 0.4, 3)
            rho = np.minimum(rho, np.sqrt((((u - c[:, None]) / s[:, None]) ** 2).sum(axis=0)))
    soft = 1 / (
        1 + np.exp(np.clip((rho - 1) / 0.08, -50, 50))
    )  # a border about a tenth of the radius wide
    if lesion.kind == "ring":  # a rim of the given intensity around a darker, necrotic core
        soft = soft * (0.35 + 0.65 / (1 + np.exp(np.clip((0.65 - rho) / 0.08, -50, 50))))
    return soft


@functools.lru_cache(maxsize=1)
def head_volume() -> np.ndarray:
    """(X, Y, Z) float32 on the template's grid: the synthetic head outside the brain (zero inside
    it), intensities relative to white matter."""
    reference = load_reference()
    d = np.maximum(reference.signed_distance(), 0)
    head = np.zeros(reference.t1.shape, np.float32)
    bands = (
        (0, 2.5, 0.12),
        (2.5, 4, 0.05),
        (4, 6.5, 0.45),
        (6.5, 8, 0.05),
        (8, 10, 0.4),
        (10, 14, 0.85),
        (14, 15.5, 0.5),
    )  # CSF, skull tables and marrow, scalp
    for lo, hi, value in bands:
        head[(d > lo) & (d <= hi)] = value
    x, y, z = (
        np.arange(n, dtype=np.float32) * reference.affine[i, i] + reference.affine[i, 3]
        for i, n in enumerate(head.shape)
    )
    x, y, z = x[:, None, None], y[None, :, None], z[None, None, :]
    below = z < -35
    neck = ((x / 48) ** 2 + ((y + 15) / 52) ** 2 < 1) & below
    fat = ((x / 55) ** 2 + ((y + 15) / 60) ** 2 < 1) & below & ~neck
    head[neck & (head == 0)] = 0.4
    head[fat & (head == 0)] = 0.8
    for side in (-32.0, 32.0):
        r = np.sqrt((x - side) ** 2 + (y - 58) ** 2 + (z + 38) ** 2)
        head[(r < 18) & (head == 0)] = 0.8
        head[r < 11] = 0.08
    head = ndimage.gaussian_filter(head, 0.8)
    texture = ndimage.gaussian_filter(np.random.default_rng(7).standard_normal(head.shape), 6)
    head *= np.exp(0.15 * texture / max(float(texture.std()), 1e-9)).astype(np.float32)
    return np.where(reference.mask, 0, head).astype(np.float32)


def make_scan(
    acquisition: Acquisition,
    lesions: list[Lesion] | None = None,
    seed: int = 0,
) -> SyntheticScan:
    """Render one synthetic scan (see the module docstring); `seed` draws the deformation, the
    lesions' shapes, the bias field and the noise."""
    a = acquisition
    lesions = list(lesions or [])
    rng = np.random.default_rng(seed)
    reference = load_reference()
    warp = rng.uniform(-1, 1, (3, 5, 5, 5)) * a.warp_mm if a.warp_mm > 0 else None
    sources = _subject(reference, a.skull, warp, lesions, seed)
    to_scan = _pose(a)
    affine, shape = _grid(a, to_scan, reference)
    to_template = np.linalg.inv(reference.affine) @ np.linalg.inv(to_scan) @ affine
    thick = int(np.argmax(a.voxel_mm)) if max(a.voxel_mm) > 2.5 else None
    offsets = np.linspace(-0.4, 0.4, SUB_SAMPLES) if thick is not None else np.zeros(1)
    rendered = []
    for source in sources:  # intensities, brain, lesion weight
        out = np.zeros(shape, np.float32)
        for o in offsets:  # a thick voxel averages samples across its thickness
            shift = to_template[:3, 3] + (o * to_template[:3, thick] if thick is not None else 0)
            out += ndimage.affine_transform(
                source, to_template[:3, :3], offset=shift, output_shape=shape, order=1
            ) / len(offsets)
        rendered.append(out)
    image, brain, lesion = rendered
    image = _contrast(image, a, rng)
    nifti = nib.Nifti1Image(image, affine)
    nifti.set_qform(affine, code=1)
    nifti.set_sform(affine, code=1)
    return SyntheticScan(nifti, to_scan, brain >= 0.5, lesion >= 0.5, a, lesions, warp)


@functools.lru_cache(maxsize=1)
def sharpened_brain() -> np.ndarray:
    """The template's brain with the demo cohort's unsharp mask (brainvq.data.demo.SHARPEN): an
    average of 152 brains is blurrier than one subject's scan."""
    reference = load_reference()
    amount, radius = SHARPEN
    t1 = reference.t1
    return np.clip(
        (t1 + amount * (t1 - ndimage.gaussian_filter(t1, radius))) * reference.mask, 0, None
    ).astype(np.float32)


def _subject(reference: Reference, skull: bool, warp, lesions: list[Lesion], seed: int):
    """On the template's grid: the subject's intensities, brain (float) and lesion weight. With a
    deformation, the subject at q shows the template at q - u(q)."""
    brain = sharpened_brain()
    values = brain + head_volume() if skull else brain.copy()
    lesion = np.zeros(values.shape, np.float32)
    for n, les in enumerate(lesions):  # planted in the template's anatomy, inside the brain
        box = _box(reference, les)
        idx = np.stack(np.meshgrid(*(np.arange(b.start, b.stop) for b in box), indexing="ij"))
        mm = reference.affine[:3, :3] @ idx.reshape(3, -1) + reference.affine[:3, 3:4]
        w = lesion_weight(les, mm, seed=seed * 1000 + n).reshape(idx.shape[1:])
        w = (w * reference.mask[box]).astype(np.float32)
        values[box] = values[box] * (1 - w) + les.intensity * w
        lesion[box] = np.maximum(lesion[box], w)
    out = (values, reference.mask.astype(np.float32), lesion)
    if warp is None:
        return out
    u = _dense_displacement(warp, reference)  # (3, X, Y, Z) mm
    spacing = np.diag(reference.affine)[:3].astype(np.float32)
    vox = np.indices(values.shape, dtype=np.float32) - u / spacing[:, None, None, None]
    return tuple(
        ndimage.map_coordinates(v, vox, order=1, mode="constant").astype(np.float32) for v in out
    )


def _box(reference: Reference, lesion: Lesion) -> tuple[slice, slice, slice]:
    """The template voxels within 2.5 radii of a lesion's centre."""
    centre = reference.to_voxels(np.asarray(lesion.centre, dtype=np.float64)[:, None])[:, 0]
    half = 2.5 * lesion.radius_mm / np.abs(np.diag(reference.affine)[:3])
    lo = np.maximum(np.floor(centre - half), 0).astype(int)
    hi = np.minimum(np.ceil(centre + half) + 1, reference.t1.shape).astype(int)
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


WARP_BOX = ((-75.0, 75.0), (-110.0, 75.0), (-50.0, 85.0))  # the lattice spans the brain


def _bump_weights(coordinate: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    """(len(coordinate), n): Gaussian bumps one lattice spacing wide over [lo, hi], rows summing
    to 1 (the kind of smooth field the demo cohort uses)."""
    position = (np.asarray(coordinate, np.float64) - lo) / (hi - lo) * (n - 1)
    w = np.exp(-0.5 * (position[:, None] - np.arange(n)[None, :]) ** 2)
    return w / w.sum(axis=1, keepdims=True)


def _dense_displacement(warp: np.ndarray, reference: Reference) -> np.ndarray:
    """(3, X, Y, Z) float32 mm: the lattice's smooth displacement at every template voxel."""
    n = warp.shape[1]
    axes = [
        _bump_weights(np.arange(size) * reference.affine[i, i] + reference.affine[i, 3], *box, n)
        for i, (size, box) in enumerate(zip(reference.t1.shape, WARP_BOX, strict=True))
    ]
    return np.einsum("ai,bj,ck,dijk->dabc", *axes, warp, optimize=True).astype(np.float32)


def _lattice_displacement(warp: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
    """(3, N) mm: the displacement u at reference points (3, N)."""
    n = warp.shape[1]
    w = [_bump_weights(points_mm[i], *box, n) for i, box in enumerate(WARP_BOX)]
    return np.einsum("ni,nj,nk,dijk->dn", *w, warp, optimize=True)


def _rotation(degrees) -> np.ndarray:
    out = np.eye(3)
    for axis, deg in enumerate(degrees):
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = out @ r
    return out


def _pose(a: Acquisition) -> np.ndarray:
    """(4, 4) reference mm -> world mm: rotation and scale about the brain's centre, a shift."""
    centre = np.asarray(BRAIN_CENTRE_MM)
    linear = _rotation(a.rotation_deg) @ np.diag(a.scale)
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = centre - linear @ centre + np.asarray(a.shift_mm)
    return out


def _grid(a: Acquisition, to_scan: np.ndarray, reference: Reference):
    """The scan's voxel -> world affine and shape: its axes in the orientation code's order,
    covering the head (or the brain, skull-stripped) with the crop/padding applied."""
    axes = np.zeros((3, 3))
    for k, letter in enumerate(a.orientation):
        world_axis, sign = _AXES[letter]
        axes[world_axis, k] = sign * a.voxel_mm[k]
    axes = _rotation((0.0, 0.0, a.oblique_deg)) @ axes
    if a.skull:
        lo = reference.affine[:3, 3]
        hi = lo + np.array(reference.t1.shape) - 1
    else:
        idx = np.argwhere(reference.mask)
        lo = reference.affine[:3, :3] @ idx.min(axis=0) + reference.affine[:3, 3] - 6
        hi = reference.affine[:3, :3] @ idx.max(axis=0) + reference.affine[:3, 3] + 6
    corners = np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    world = corners @ to_scan[:3, :3].T + to_scan[:3, 3]
    voxels = world @ np.linalg.inv(axes).T
    vlo, vhi = voxels.min(axis=0), voxels.max(axis=0)
    crop = np.asarray(a.crop_mm).reshape(3, 2) / np.asarray(a.voxel_mm)[:, None]
    vlo, vhi = vlo + crop[:, 0], vhi - crop[:, 1]
    shape = tuple(int(n) for n in np.maximum(np.ceil(vhi - vlo) + 1, 2))
    affine = np.eye(4)
    affine[:3, :3] = axes
    affine[:3, 3] = axes @ vlo
    return affine, shape


def _contrast(image: np.ndarray, a: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """Contrast curve, bias field, Rician noise and the intensity scale."""
    x = np.clip(image, 0, None) ** a.gamma
    if a.invert:
        x = np.where(x > 0.02, np.clip(1.6 - x, 0, None), x)
    if a.bias > 0:
        lattice = rng.uniform(-1, 1, (4, 4, 4))
        w = [_bump_weights(np.arange(n), 0, n - 1, 4) for n in x.shape]
        x = x * np.exp(a.bias * np.einsum("ai,bj,ck,ijk->abc", *w, lattice, optimize=True))
    if a.noise > 0:
        shape = x.shape
        x = np.sqrt((x + rng.normal(0, a.noise, shape)) ** 2 + rng.normal(0, a.noise, shape) ** 2)
    return (x * a.intensity_scale).astype(np.float32)
