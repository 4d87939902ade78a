"""load_slices: any supported source -> a cached SliceSet, memory-mapped from its slice store.

The source is recognised (and checked) before anything is decoded or written, so a bad
source fails fast with a message that names the path and what was expected, and leaves no
cache entry behind.
"""

from __future__ import annotations

import dataclasses
import os
from importlib.metadata import version
from pathlib import Path

from brainvq.data.cache import SliceCache, cache_key
from brainvq.data.demo import DemoSettings, demo_frame, demo_plan
from brainvq.data.folder import ImageFolderSource
from brainvq.data.imaging import is_image_name
from brainvq.data.nifti import NiftiSource
from brainvq.data.oasis import EXPECTED, OasisSource
from brainvq.data.sliceset import SliceSet
from brainvq.data.volumes.discovery import find_scans, refuse_series

DEMO = "demo"
SUPPORTED = (
    "expected 'demo', an OASIS folder or keras_png_slices_data.zip, a folder of PNG/JPEG "
    "slices, volumes (a .nii/.nii.gz, .mgz, .nrrd or .mha file, a folder of them, a DICOM "
    "series' folder or DICOMDIR, a BIDS tree)"
)

Source = OasisSource | ImageFolderSource | NiftiSource


def check_size(size: int) -> None:
    """ValueError unless `size` is a positive multiple of 8 (the models downsample by 4 or 8)."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % 8:
        raise ValueError(f"size must be a positive multiple of 8, got {size!r}")


def resolve_source(
    source: str | Path,
    n_levels: int = 32,
    z_range_mm: tuple[float, float] | None = None,
    series: str | None = None,
) -> Source:
    """Recognise what `source` is without decoding anything (series: the DICOM series to take,
    brainvq.data.volumes.series).

    Raises FileNotFoundError for a missing path and ValueError for anything that is not one
    of the supported sources.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data source not found: {path} ({SUPPORTED})")
    if path.is_file() and path.name.lower().endswith(".zip"):
        refuse_series(series, path)
        refuse_range(z_range_mm, path, "an OASIS slice set")
        return OasisSource.from_zip(path)
    oasis = OasisSource.from_folder(path) if path.is_dir() else None
    if oasis is not None:
        refuse_series(series, path)
        refuse_range(z_range_mm, path, "an OASIS slice set")
        return oasis
    found = find_scans(path, series)
    if found is not None:
        return NiftiSource(
            path,
            found.scans,
            found.left_out,
            n_levels=n_levels,
            z_range_mm=z_range_mm,
            notes=tuple(found.notes),
        )
    if path.is_file():
        raise ValueError(f"{path}: unsupported file ({SUPPORTED})")
    refuse_series(series, path)
    images, others = _scan(path)
    if images:
        refuse_range(z_range_mm, path, "a folder of slices")
        return ImageFolderSource(path, images, others)
    found_text = (
        f" (only {len(others)} other files, e.g. {others[0]})"
        if others
        else " (the folder is empty)"
    )
    raise ValueError(
        f"{path}: no images or volumes found{found_text}; {SUPPORTED}. For OASIS: {EXPECTED}"
    )


def refuse_range(z_range_mm: tuple[float, float] | None, path: Path, what: str) -> None:
    """ValueError when a z range is asked of a source whose slices have their own levels."""
    if z_range_mm is not None:
        raise ValueError(
            f"{path}: {what} lies on OASIS's band of 32 levels; data.z_range_mm "
            f"{list(z_range_mm)} slices volumes and the demo cohort only (set it to null)"
        )


def _scan(root: Path) -> tuple[list[str], list[str]]:
    """Files under `root` (hidden folders skipped), relative, as (images, others)."""
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            (images if is_image_name(name) else others).append(rel)
    return images, others


def load_slices(
    source: str | Path,
    size: int = 128,
    *,
    cache_dir: Path | None = None,
    n_levels: int = 32,
    z_range_mm: tuple[float, float] | None = None,
    seed: int = 0,
    demo_subjects: tuple[int, int, int] = (48, 8, 8),
    progress: bool = True,
    workers: int | None = None,
    series: str | None = None,
) -> SliceSet:
    """Load 2D brain slices from `source` at size x size, using the on-disk cache.

    Args:
        source: "demo" (the synthetic cohort), an OASIS folder (the split folders at any depth
            below it) or keras_png_slices_data.zip, a folder of PNG/JPEG slices, or volumes
            (brainvq.data.volumes: NIfTI, MGZ, NRRD/MHA files, DICOM series, BIDS trees).
        size: working size, a positive multiple of 8 (images are size x size).
        cache_dir: cache folder; default $BRAINVQ_CACHE, else ~/.cache/brainvq.
        n_levels: levels of OASIS's band per virtual subject (demo) or volume (NIfTI).
        z_range_mm: volumes and the demo cohort: every level of the frame's grid between these
            MNI heights instead (brainvq.data.space.run_space.spanning_frame).
        series: volumes: the DICOM series to take (a SeriesNumber or SeriesInstanceUID;
            default: each study's T1, brainvq.data.volumes.series).
        seed: the demo cohort's seed.
        demo_subjects: demo subjects in (train, validate, test).
        progress: show progress bars on stderr while decoding.
        workers: processes that decode (volumes, subjects or chunks of files) in parallel
            when the store is built; None: one per core for a large source, 0 for a small one.
    Returns:
        SliceSet with images (N, size, size) uint8 and per-image split, subject, slice index
        and file name, memory-mapped from the cache's slice store (read only where used),
        stored split by split (train, validate, test).
    """
    check_size(size)
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    cache = SliceCache(cache_dir)
    if str(source) == DEMO:
        refuse_series(series, DEMO)
        subjects = tuple(int(n) for n in demo_subjects)
        description = {
            "kind": DEMO,
            "size": size,
            "n_levels": n_levels,
            "seed": seed,
            "subjects": subjects,
            "template": f"nilearn {version('nilearn')}",
            # a change to the cohort's variation or its frame must not hit an old cache
            "settings": dataclasses.asdict(DemoSettings()),
            "frame": demo_frame(n_levels, z_range_mm).to_dict(),
        }
        key = cache_key(description)
        cached = cache.get(DEMO, key)
        if cached is not None:
            return cached
        plan = demo_plan(size, n_levels, subjects, seed, z_range_mm=z_range_mm)
        return cache.build(DEMO, key, plan, description, workers, progress)
    resolved = resolve_source(source, n_levels=n_levels, z_range_mm=z_range_mm, series=series)
    description = {"kind": resolved.kind, "size": size, "fingerprint": resolved.fingerprint()}
    key = cache_key(description)
    cached = cache.get(resolved.kind, key)
    if cached is not None:
        return cached
    return cache.build(resolved.kind, key, resolved.plan(size), description, workers, progress)
