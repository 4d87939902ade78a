"""SliceCache: decoded SliceSets on disk, as .npz arrays (no pickle) plus a JSON description.

An entry is keyed by a SHA-256 of everything the decoded arrays depend on: the loader's
version, the kind of source, its fingerprint (file list, sizes, mtimes), the working size
and the loader options. Any change to a file, a file added or removed, or a different option
gives a different key, so a stale entry is never read. Both files are written atomically;
the JSON is written last and names the key, so a half-written pair is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from brainvq.data.sliceset import SliceSet
from brainvq.io.atomic import atomic_path, atomic_write_json

# Bump when decoding changes in a way that changes the arrays, so old entries are not read.
CACHE_VERSION = 2  # 2: the slice level array is named "level"
ENV_VAR = "BRAINVQ_CACHE"
_ARRAYS = ("images", "split", "subject", "level", "filename")


def default_cache_dir() -> Path:
    """$BRAINVQ_CACHE if set, else ~/.cache/brainvq."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "brainvq"


def cache_key(description: dict[str, Any]) -> str:
    """SHA-256 (hex) of the JSON of `description` (keys sorted) and the cache version."""
    text = json.dumps({"version": CACHE_VERSION, **description}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SliceCache:
    """A folder of cached SliceSets, `<kind>-<key[:20]>.npz` and `.json`."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(
                f"cache directory {self.directory} is a file, expected a folder"
            )

    def _paths(self, kind: str, key: str) -> tuple[Path, Path]:
        stem = self.directory / f"{kind}-{key[:20]}"
        return stem.with_suffix(".npz"), stem.with_suffix(".json")

    def get(self, kind: str, key: str) -> SliceSet | None:
        """The cached SliceSet for `key`, or None if there is no complete, matching entry."""
        npz_path, json_path = self._paths(kind, key)
        if not (npz_path.is_file() and json_path.is_file()):
            return None
        try:
            meta = json.loads(json_path.read_text(encoding="utf-8"))
            if meta.get("key") != key:
                return None
            with np.load(npz_path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in _ARRAYS}
        except (OSError, ValueError, KeyError):
            return None
        return SliceSet(
            **arrays,
            source=meta["source"],
            notes=tuple(meta["notes"]),
            splits_present=tuple(meta["splits_present"]),
            n_levels=int(meta["n_levels"]),
        )

    def put(self, kind: str, key: str, sliceset: SliceSet, description: dict[str, Any]) -> Path:
        """Store `sliceset` under `key`; returns the .npz path."""
        npz_path, json_path = self._paths(kind, key)
        with atomic_path(npz_path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **{name: getattr(sliceset, name) for name in _ARRAYS})
        meta = {
            "key": key,
            "kind": kind,
            "source": sliceset.source,
            "notes": list(sliceset.notes),
            "splits_present": list(sliceset.splits_present),
            "n_levels": sliceset.n_levels,
            "n_images": len(sliceset),
            "size": sliceset.size,
            "options": {k: v for k, v in description.items() if k != "fingerprint"},
        }
        atomic_write_json(json_path, meta)
        return npz_path
