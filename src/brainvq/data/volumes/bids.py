"""BIDS trees: the anatomical images of every subject and session, named by their entities.

A folder is a BIDS tree when it holds `dataset_description.json` or `sub-<label>/anat/` or
`sub-<label>/ses-<label>/anat/` folders (https://bids-specification.readthedocs.io, "Folder
structure"). Its scans are the images `sub-<label>/[ses-<label>/]anat/<entities>_<suffix>.nii[.gz]`
whose suffix is asked for (T1w by default): the file name's entities (sub, ses, acq, run, ...)
name the outputs, unique across a valid tree since BIDS makes them so. Everything else is left
out without being an error: sidecar JSON, `participants.tsv`, `func/`, `dwi/`, `fmap/`, other
anatomical suffixes, and `derivatives/`, `sourcedata/` and `code/`, whose images are not raw
scans. A subject's sessions share its label, which training uses to keep them in one split.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from brainvq.data.volumes.files import volume_stem

DESCRIPTION = "dataset_description.json"
NOT_RAW = ("derivatives", "sourcedata", "code")
IMAGE = re.compile(
    r"^(?P<stem>sub-(?P<sub>[A-Za-z0-9]+)(?:_ses-(?P<ses>[A-Za-z0-9]+))?(?:_[a-z]+-[A-Za-z0-9]+)*"
    r"_(?P<suffix>[A-Za-z0-9]+))\.nii(\.gz)?$"
)
T1W = ("T1w",)


@dataclass(frozen=True)
class BidsImage:
    """One anatomical image: path, rel (relative to the tree), name (its entities and suffix:
    `sub-01_ses-02_T1w`), subject and session labels (session "" when none)."""

    path: Path
    rel: str
    name: str
    subject: str
    session: str


def is_bids_tree(root: Path) -> bool:
    """Whether `root` is a BIDS tree (module docstring)."""
    if (root / DESCRIPTION).is_file():
        return True
    return any(p.is_dir() for p in root.glob("sub-*/anat")) or any(
        p.is_dir() for p in root.glob("sub-*/ses-*/anat")
    )


def bids_images(root: Path, suffixes: tuple[str, ...] = T1W) -> tuple[list[BidsImage], list[str]]:
    """(the anatomical images with one of `suffixes`, by name; every other file of the tree,
    relative, sorted: left out). ValueError naming the tree when it holds no such image."""
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d not in NOT_RAW]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        in_anat = rel_dir.name == "anat" and rel_dir.parts[0].startswith("sub-")
        for name in sorted(filenames):
            rel = (rel_dir / name).as_posix()
            match = IMAGE.match(name) if in_anat else None
            if match and match["suffix"] in suffixes:
                images.append(
                    BidsImage(
                        Path(dirpath) / name,
                        rel,
                        volume_stem(name),
                        match["sub"],
                        match["ses"] or "",
                    )
                )
            elif not name.startswith("."):
                others.append(rel)
    if not images:
        wanted = "/".join(suffixes)
        example = f" (e.g. {others[0]})" if others else ""
        raise ValueError(
            f"{root}: a BIDS tree with no {wanted} image; expected "
            f"sub-<label>/[ses-<label>/]anat/sub-<label>[_ses-<label>]..._{suffixes[0]}.nii.gz "
            f"files, found {len(others)} other files{example}"
        )
    return sorted(images, key=lambda im: im.rel), others
