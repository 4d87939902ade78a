"""Scans as users have them, made from the reference with the truth known: for measuring, not
for training.

A synthetic subject (brainvq.evaluation.synthetic_anatomy) is nilearn's MNI152 template (sharpened
as the demo cohort's, since an average of 152 brains is blurrier than one subject), optionally
atrophied (enlarged ventricles and sulci), optionally under a smooth random deformation (the demo
cohort's kind of variation, in 3D), optionally inside a synthetic head (CSF, skull tables and
marrow, scalp muscle and fat, two eyes) and body (the neck down to the shoulders), optionally with
3D lesions, and then acquired: a random pose (rotation, anisotropic scale, shift, a scanner
origin anywhere, the volume's corner included), an orientation code (RAS, LPS, LAS, permuted
axes), voxel sizes (1 mm, 0.9 mm, 2 mm, thick 5 mm slices averaged over their thickness), a field
of view cropped or padded (or, for a raw head, reaching down the neck), a contrast curve, a bias
field, Rician noise over the whole field of view and an arbitrary intensity scale.

`random_acquisition` draws tidy research and clinical scans (a skull or not, the head's box);
`random_head_acquisition` draws raw heads as they come off a research scanner: skull, neck and
shoulders in the field of view, 1 or 2 mm, noisy background, the origin anywhere, heads tilted
as a sagittal acquisition holds them, small (children) to large, atrophied or not.

The truth comes with it: `to_scan` (reference mm -> scan world mm, the affine part),
the deformation, the brain mask and the lesion mask in the scan's voxels. Nothing here is used by
brainvq's own pipeline, and its lesions are not the kinds real scans have (which are unknown
here): they measure, they must not be tuned to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainvq.data.nifti_codes import XFORM_SCANNER
from brainvq.data.space.template import BRAIN_CENTRE_MM, Reference, load_reference
from brainvq.evaluation.synthetic_anatomy import (
    Lesion,
    atrophied,
    body_volume,
    bump_weights,
    dense_displacement,
    head_volume,
    lattice_displacement,
    lesion_box,
    lesion_weight,
    rotation,
    sharpened_brain,
)

ORIENTATIONS = ("RAS", "LPS", "LAS", "PIR", "ASL", "SRA", "ILP")
SAGITTAL = ("PIR", "ASL", "AIL", "PSR")  # how sagittal head acquisitions store their axes
_AXES = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
SUB_SAMPLES = 5  # samples across a thick voxel's thickness
HEAD_TOP_MM = 100.0  # reference height above the scalp's top: a raw head's field of view ends here


@dataclass(frozen=True)
class Acquisition:
    """How one scan is made (every value drawn by `random_acquisition` or
    `random_head_acquisition`)."""

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
    # a raw head: the field of view reaches down to this reference height (mm) through the neck
    # (and shoulders, below about -150) instead of ending at the head's box; None: the box
    neck_to_mm: float | None = None
    atrophy: float = 0.0  # 0: the template's brain; 1: ventricles +6 mm, sulci and cortex 2.5 mm
    corner_origin: bool = False  # the scanner puts world (0, 0, 0) at the volume's first voxel


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
            q = points_mm + lattice_displacement(self.warp, q)
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


def random_head_acquisition(rng: np.random.Generator, **fixed) -> Acquisition:
    """A raw research head (module docstring): skull, neck and shoulders, 1 or 2 mm (sagittal
    mostly), a noisy background, the head pitched up to 25 degrees, 85-110% of the template's
    size, the origin anywhere (a third of them at the volume's corner), half of them atrophied;
    `fixed` sets some."""
    voxel = 1.0 if rng.random() < 0.5 else 2.0
    size = float(rng.uniform(0.85, 1.1))
    values = dict(
        orientation=str(rng.choice(SAGITTAL)) if rng.random() < 0.7 else "LAS",
        voxel_mm=(voxel,) * 3,
        rotation_deg=(float(rng.uniform(-25, 15)), *rng.uniform(-8, 8, 2)),
        scale=tuple(size * (1 + rng.uniform(-0.05, 0.05, 3))),
        shift_mm=tuple(rng.uniform(-150, 150, 3)),
        crop_mm=(*rng.uniform(-20, 10, 4), 0.0, float(rng.uniform(-15, 5))),
        skull=True,
        warp_mm=float(rng.uniform(2.0, 5.0)),
        gamma=float(rng.uniform(0.8, 1.25)),
        bias=float(rng.uniform(0.1, 0.4)),
        noise=float(rng.uniform(0.02, 0.06)),
        intensity_scale=float(rng.uniform(100, 4000)),
        neck_to_mm=float(rng.uniform(-190, -95)),
        atrophy=float(rng.uniform(0.3, 1.0)) if rng.random() < 0.5 else 0.0,
        corner_origin=bool(rng.random() < 0.35),
    )
    values.update(fixed)
    return Acquisition(**values)


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
    sources = _subject(reference, a, warp, lesions, seed)
    to_scan = _pose(a)
    affine, shape = _grid(a, to_scan, reference)
    if a.corner_origin:  # the same voxels, the world moved so the first voxel is at its origin
        to_scan[:3, 3] -= affine[:3, 3]
        affine[:3, 3] = 0.0
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
    if a.neck_to_mm is not None:  # the body beyond the template's box, blended in at its edge
        body, body_affine = body_volume()
        to_body = np.linalg.inv(body_affine) @ np.linalg.inv(to_scan) @ affine
        in_box = ndimage.affine_transform(
            np.ones(reference.t1.shape, np.float32),
            to_template[:3, :3],
            offset=to_template[:3, 3],
            output_shape=shape,
            order=1,
        )
        image += (1 - in_box) * ndimage.affine_transform(
            body, to_body[:3, :3], offset=to_body[:3, 3], output_shape=shape, order=1
        )
    image = _contrast(image, a, rng)
    nifti = nib.Nifti1Image(image, affine)
    nifti.set_qform(affine, code=XFORM_SCANNER)
    nifti.set_sform(affine, code=XFORM_SCANNER)
    return SyntheticScan(nifti, to_scan, brain >= 0.5, lesion >= 0.5, a, lesions, warp)


def _subject(reference: Reference, a: Acquisition, warp, lesions: list[Lesion], seed: int):
    """On the template's grid: the subject's intensities, brain (float) and lesion weight. With a
    deformation, the subject at q shows the template at q - u(q)."""
    brain, mask = atrophied(sharpened_brain(), a.atrophy)
    values = brain + head_volume() if a.skull else brain.copy()
    lesion = np.zeros(values.shape, np.float32)
    for n, les in enumerate(lesions):  # planted in the template's anatomy, inside the brain
        box = lesion_box(reference, les)
        idx = np.stack(np.meshgrid(*(np.arange(b.start, b.stop) for b in box), indexing="ij"))
        mm = reference.affine[:3, :3] @ idx.reshape(3, -1) + reference.affine[:3, 3:4]
        w = lesion_weight(les, mm, seed=seed * 1000 + n).reshape(idx.shape[1:])
        w = (w * reference.mask[box]).astype(np.float32)
        values[box] = values[box] * (1 - w) + les.intensity * w
        lesion[box] = np.maximum(lesion[box], w)
    out = (values, mask.astype(np.float32), lesion)
    if warp is None:
        return out
    u = dense_displacement(warp, reference)  # (3, X, Y, Z) mm
    spacing = np.diag(reference.affine)[:3].astype(np.float32)
    vox = np.indices(values.shape, dtype=np.float32) - u / spacing[:, None, None, None]
    return tuple(
        ndimage.map_coordinates(v, vox, order=1, mode="constant").astype(np.float32) for v in out
    )


def _pose(a: Acquisition) -> np.ndarray:
    """(4, 4) reference mm -> world mm: rotation and scale about the brain's centre, a shift."""
    centre = np.asarray(BRAIN_CENTRE_MM)
    linear = rotation(a.rotation_deg) @ np.diag(a.scale)
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
    axes = rotation((0.0, 0.0, a.oblique_deg)) @ axes
    if a.neck_to_mm is not None:  # a raw head: ear to ear, nose to neck, vertex to neck
        lo = np.array([-110.0, -140.0, a.neck_to_mm])
        hi = np.array([110.0, 110.0, HEAD_TOP_MM])
    elif a.skull:
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
        w = [bump_weights(np.arange(n), 0, n - 1, 4) for n in x.shape]
        x = x * np.exp(a.bias * np.einsum("ai,bj,ck,ijk->abc", *w, lattice, optimize=True))
    if a.noise > 0:
        shape = x.shape
        x = np.sqrt((x + rng.normal(0, a.noise, shape)) ** 2 + rng.normal(0, a.noise, shape) ** 2)
    return (x * a.intensity_scale).astype(np.float32)
