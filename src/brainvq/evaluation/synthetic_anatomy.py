"""The anatomy of synthetic scans, on the reference's grid: a brain, a head around it, a body
below it, atrophy, deformations and lesions. brainvq.evaluation.synthetic_scans acquires them.

- `sharpened_brain`: nilearn's MNI152 brain with the demo cohort's unsharp mask (an average of
  152 brains is blurrier than one subject's scan).
- `head_volume`: CSF, skull tables and marrow, scalp muscle and fat, two eyes, the face and the
  top of the neck, built from the distance to the brain mask, inside the template's box (1 mm).
- `body_volume`: what a raw head acquisition also holds below that box: the face's lower part
  and the neck down to the shoulders, on a coarser canvas (BODY_MM).
- `atrophied`: an older brain: ventricles enlarged, sulci widened, the cortex thinned, by an
  amount in [0, 1] (0: the template's own anatomy).
- smooth deformations on a coarse lattice (`dense_displacement`, `lattice_displacement`): the
  demo cohort's kind of variation, in 3D.
- `Lesion`s of several kinds (ellipsoids, irregular blobs, rings with a necrotic core,
  clusters) and `random_lesions` anywhere in the brain between two heights.

A crude anatomy, but one the registration never sees as a template. Nothing here is used by
brainvq's own pipeline, and its lesions are not the kinds real scans have: they measure, they
must not be tuned to.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brainvq.data.demo import SHARPEN
from brainvq.data.space.template import Reference, load_reference

LESION_KINDS = ("ellipsoid", "blob", "ring", "cluster")
BODY_MM = 2.0  # the body canvas's voxel
BODY_BOX = ((-210.0, 210.0), (-170.0, 130.0), (-270.0, 120.0))  # reference mm it spans
NECK_TOP_MM = -35.0  # below this height the head becomes a neck
SHOULDERS_MM = (-150.0, -185.0)  # the neck widens into the shoulders between these heights


@functools.lru_cache(maxsize=1)
def sharpened_brain() -> np.ndarray:
    """(X, Y, Z) float32: the template's brain with the demo cohort's unsharp mask
    (brainvq.data.demo.SHARPEN)."""
    reference = load_reference()
    amount, radius = SHARPEN
    t1 = reference.t1
    return np.clip(
        (t1 + amount * (t1 - ndimage.gaussian_filter(t1, radius))) * reference.mask, 0, None
    ).astype(np.float32)


def _texture(shape: tuple[int, ...], sigma: float, seed: int) -> np.ndarray:
    """A smooth multiplicative texture around 1 (tissue is never flat)."""
    t = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return np.exp(0.15 * t / max(float(t.std()), 1e-9)).astype(np.float32)


def _ellipsoid(x, y, z, centre, half) -> np.ndarray:
    """(broadcast) bool: inside the ellipsoid of `centre` (3,) and half axes `half` (3,), mm."""
    return ((x - centre[0]) / half[0]) ** 2 + ((y - centre[1]) / half[1]) ** 2 + (
        (z - centre[2]) / half[2]
    ) ** 2 < 1


def _below_brain(x, y, z) -> np.ndarray:
    """Intensities (relative to white matter) of what lies below the brain at reference mm x, y,
    z (broadcast): the face (muscle, the jaw's marrow, dark sinuses, nasal and oral cavities, in
    an envelope of fat) and the neck (muscle with fat planes, the spine's bright marrow, the dark
    airway) widening into the shoulders. Crude, but with the structure and the mass that pull a
    raw head's centre of mass and its mutual information away from the brain."""
    top, bottom = SHOULDERS_MM
    t = np.clip((top - z) / (top - bottom), 0, 1)  # 0 in the neck, 1 in the shoulders
    t = t * t * (3 - 2 * t)
    half_x = 55 + t * 125  # the neck's muscle, half width mm
    half_y = 55 + t * 10
    cy = -20 - t * 10
    muscle = ((x / half_x) ** 2 + ((y - cy) / half_y) ** 2 < 1) & (z < NECK_TOP_MM)
    fat = ((x / (half_x + 8)) ** 2 + ((y - cy) / (half_y + 8)) ** 2 < 1) & (z < NECK_TOP_MM)
    out = np.where(muscle, 0.45, np.where(fat, 1.1, 0.0))
    planes = muscle & (np.abs(np.abs(x) - 0.45 * half_x) < 2.5)  # fat between muscle groups
    out = np.where(planes, 0.9, out)
    spine = ((x / 12) ** 2 + ((y - cy + 0.45 * half_y) / 14) ** 2 < 1) & (z < -40)
    out = np.where(spine, 0.75, out)  # vertebral bodies' marrow
    airway = ((x / 8) ** 2 + ((y - cy - 0.35 * half_y) / 7) ** 2 < 1) & (z < -60)
    out = np.where(airway & (t < 0.5), 0.02, out)
    face = _ellipsoid(x, y, z, (0, 45, -50), (62, 55, 38)) & (y > 5)
    face_fat = _ellipsoid(x, y, z, (0, 45, -50), (68, 61, 44)) & (y > 0)
    jaw = face & ~_ellipsoid(x, y, z, (0, 40, -48), (54, 48, 30))
    out = np.where(face_fat & (out == 0), 1.1, out)
    out = np.where(face, 0.45, out)
    out = np.where(jaw, 0.8, out)  # the mandible's and maxilla's marrow
    for cavity in (
        ((-26, 55, -30), (13, 16, 12)),  # maxillary sinuses
        ((26, 55, -30), (13, 16, 12)),
        ((0, 70, -32), (6, 22, 14)),  # the nasal cavity
        ((0, 45, -62), (22, 28, 5)),  # the mouth
    ):
        out = np.where(_ellipsoid(x, y, z, *cavity), 0.02, out)
    return out.astype(np.float32)


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
        (10, 14, 1.1),
        (14, 15.5, 0.5),
    )  # CSF, skull tables and marrow, scalp
    for lo, hi, value in bands:
        head[(d > lo) & (d <= hi)] = value
    x, y, z = (
        np.arange(n, dtype=np.float32) * reference.affine[i, i] + reference.affine[i, 3]
        for i, n in enumerate(head.shape)
    )
    x, y, z = x[:, None, None], y[None, :, None], z[None, None, :]
    head = np.where(head == 0, _below_brain(x, y, z), head)
    for side in (-32.0, 32.0):
        r = np.sqrt((x - side) ** 2 + (y - 58) ** 2 + (z + 38) ** 2)
        head[(r < 18) & (head == 0)] = 0.8
        head[r < 11] = 0.08
    head = ndimage.gaussian_filter(head, 0.8) * _texture(head.shape, 6, 7)
    return np.where(reference.mask, 0, head).astype(np.float32)


@functools.lru_cache(maxsize=1)
def body_volume() -> tuple[np.ndarray, np.ndarray]:
    """(data (X, Y, Z) float32, affine (4, 4) voxel -> reference mm): the neck and shoulders on
    a BODY_MM canvas spanning BODY_BOX (inside the template's box head_volume takes over)."""
    axes = [np.arange(lo, hi + BODY_MM / 2, BODY_MM, dtype=np.float32) for lo, hi in BODY_BOX]
    x, y, z = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    body = _below_brain(x, y, z)
    body = ndimage.gaussian_filter(body, 0.8 / BODY_MM) * _texture(body.shape, 3, 8)
    affine = np.diag([BODY_MM, BODY_MM, BODY_MM, 1.0])
    affine[:3, 3] = [box[0] for box in BODY_BOX]
    return body.astype(np.float32), affine


def atrophied(brain: np.ndarray, amount: float) -> tuple[np.ndarray, np.ndarray]:
    """An older brain on the template's grid: the lateral ventricles enlarged by up to 4 mm, the
    sulci widened by up to 2.5 mm and the cortex thinned by up to 2 mm, all as CSF, in
    proportion to `amount` in [0, 1]. Returns (intensities (X, Y, Z) float32, its brain mask
    (X, Y, Z) bool: the template's, less the cortex that thinning turned to CSF)."""
    reference = load_reference()
    if amount <= 0:
        return brain, reference.mask
    depth = reference.signed_distance()  # < 0 inside the brain
    t1 = reference.t1
    dark = (t1 < 0.42) & reference.mask
    labels, n = ndimage.label(dark & (depth < -20))
    sizes = ndimage.sum_labels(np.ones_like(t1), labels, index=np.arange(1, n + 1))
    ventricles = np.isin(labels, 1 + np.argsort(sizes)[-2:])  # the two lateral ventricles
    grown = ndimage.distance_transform_edt(~ventricles) <= 0.5 + 3.5 * amount
    sulci = (t1 < 0.5) & reference.mask & (depth > -12)
    widened = (ndimage.distance_transform_edt(~sulci) <= 0.5 + 2.0 * amount) & (t1 < 0.8)
    thinned = (depth > -(0.5 + 1.5 * amount)) & reference.mask
    csf = (grown | widened | thinned) & reference.mask
    weight = np.clip(ndimage.gaussian_filter(csf.astype(np.float32), 0.7), 0, 1)
    value = float(np.median(brain[ventricles]))  # CSF as this brain shows it
    older = brain * (1 - weight) + value * weight * reference.mask
    return older.astype(np.float32), reference.mask & ~thinned


WARP_BOX = ((-75.0, 75.0), (-110.0, 75.0), (-50.0, 85.0))  # the lattice spans the brain


def bump_weights(coordinate: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    """(len(coordinate), n): Gaussian bumps one lattice spacing wide over [lo, hi], rows summing
    to 1 (the kind of smooth field the demo cohort uses)."""
    position = (np.asarray(coordinate, np.float64) - lo) / (hi - lo) * (n - 1)
    w = np.exp(-0.5 * (position[:, None] - np.arange(n)[None, :]) ** 2)
    return w / w.sum(axis=1, keepdims=True)


def dense_displacement(warp: np.ndarray, reference: Reference) -> np.ndarray:
    """(3, X, Y, Z) float32 mm: the lattice's (3, n, n, n) smooth displacement at every template
    voxel."""
    n = warp.shape[1]
    axes = [
        bump_weights(np.arange(size) * reference.affine[i, i] + reference.affine[i, 3], *box, n)
        for i, (size, box) in enumerate(zip(reference.t1.shape, WARP_BOX, strict=True))
    ]
    return np.einsum("ai,bj,ck,dijk->dabc", *axes, warp, optimize=True).astype(np.float32)


def lattice_displacement(warp: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
    """(3, N) mm: the displacement u at reference points (3, N)."""
    n = warp.shape[1]
    w = [bump_weights(points_mm[i], *box, n) for i, box in enumerate(WARP_BOX)]
    return np.einsum("ni,nj,nk,dijk->dn", *w, warp, optimize=True)


def rotation(degrees) -> np.ndarray:
    """(3, 3): rotations about x, y and z by `degrees` (3,), applied in that order."""
    out = np.eye(3)
    for axis, deg in enumerate(degrees):
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = out @ r
    return out


@dataclass(frozen=True)
class Lesion:
    """A lesion in reference mm: kind, centre (3,), radius mm, intensity relative to white
    matter (< 1 hypo-, > 1 hyperintense)."""

    kind: str
    centre: tuple[float, float, float]
    radius_mm: float
    intensity: float


def random_lesions(
    rng: np.random.Generator,
    n: int,
    z_range_mm: tuple[float, float] = (-4.0, 32.0),
    where: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[Lesion]:
    """n lesions of random kinds, 3-15 mm radius, hypo- or hyperintense, centred inside the brain
    (at least 3 mm from its edge) between the given heights and, when given, where `where`
    (MNI mm (3, M) -> (M,) bool: a region such as the cerebellum) says."""
    reference = load_reference()
    depth = reference.signed_distance()
    inside = np.argwhere(depth < -3.0)
    mm = reference.affine[:3, :3] @ inside.T + reference.affine[:3, 3:4]  # (3, M)
    keep = (mm[2] >= z_range_mm[0]) & (mm[2] <= z_range_mm[1])
    if where is not None:
        keep &= where(mm)
    inside = inside[keep]
    if len(inside) == 0:
        raise ValueError(f"z_range_mm {z_range_mm}: no brain between these heights (and there)")
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
    u = rotation(rng.uniform(-180, 180, 3)).T @ d  # (3, N) in the lesion's own axes
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
    # a border about a tenth of the radius wide
    soft = 1 / (1 + np.exp(np.clip((rho - 1) / 0.08, -50, 50)))
    if lesion.kind == "ring":  # a rim of the given intensity around a darker, necrotic core
        soft = soft * (0.35 + 0.65 / (1 + np.exp(np.clip((0.65 - rho) / 0.08, -50, 50))))
    return soft


def lesion_box(reference: Reference, lesion: Lesion) -> tuple[slice, slice, slice]:
    """The template voxels within 2.5 radii of a lesion's centre."""
    centre = reference.to_voxels(np.asarray(lesion.centre, dtype=np.float64)[:, None])[:, 0]
    half = 2.5 * lesion.radius_mm / np.abs(np.diag(reference.affine)[:3])
    lo = np.maximum(np.floor(centre - half), 0).astype(int)
    hi = np.minimum(np.ceil(centre + half) + 1, reference.t1.shape).astype(int)
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
