"""SliceCache: decoded sources on disk, one slice store (brainvq.data.store) per entry.

An entry is keyed by a SHA-256 of everything the decoded arrays depend on: the loader's
version, the kind of source, its fingerprint (file list, sizes, mtimes), the working size
and the loader options. Any change to a file, a file added or removed, or a different option
gives a different key, so a stale entry is never read. An entry is built straight into its
store, a part at a time (in parallel over the source's volumes or files), and appears only
when complete: a build that fails or is killed leaves no entry, and the next one starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from brainvq.data.decode import DecodePlan, collect
from brainvq.data.sliceset import SliceSet
from brainvq.data.store import StoreWriter, open_store, remove_abandoned, temporary_path

# Bump when decoding changes in a way that changes the arrays, so old entries are not read.
CACHE_VERSION = 3  # 3: slice stores, slices ordered by split
ENV_VAR = "BRAINVQ_CACHE"
STORE_SUFFIX = ".store"


def default_cache_dir() -> Path:
    """$BRAINVQ_CACHE if set, else ~/.cache/brainvq."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "brainvq"


def cache_key(description: dict[str, Any]) -> str:
    """SHA-256 (hex) of the JSON of `description` (keys sorted) and the cache version."""
    text = json.dumps({"version": CACHE_VERSION, **description}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SliceCache:
    """A folder of slice stores, `<kind>-<key[:20]>.store/`."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(
                f"cache directory {self.directory} is a file, expected a folder"
            )

    def path(self, kind: str, key: str) -> Path:
        return self.directory / f"{kind}-{key[:20]}{STORE_SUFFIX}"

    def get(self, kind: str, key: str) -> SliceSet | None:
        """The cached SliceSet for `key` (memory-mapped), or None if there is no complete,
        matching entry."""
        return open_store(self.path(kind, key), key)

    def build(
        self,
        kind: str,
        key: str,
        plan: DecodePlan,
        description: dict[str, Any],
        workers: int | None = None,
        show_progress: bool = True,
    ) -> SliceSet:
        """Decode `plan` into the store of `key` (workers: as brainvq.data.decode.collect) and
        return it, memory-mapped."""
        path = self.path(kind, key)
        made = [p for p in (self.directory, *self.directory.parents) if not p.exists()]
        self.directory.mkdir(parents=True, exist_ok=True)
        remove_abandoned(self.directory)
        existing = open_store(path, key)
        if existing is not None:  # another process (a DDP rank, a tuning worker) built it
            return existing
        if path.exists():  # damaged (it did not open): out of the way, atomically, then gone
            aside = temporary_path(path).with_suffix(".damaged")
            os.rename(path, aside)
            shutil.rmtree(aside, ignore_errors=True)
        options = {k: v for k, v in description.items() if k != "fingerprint"}
        try:
            with StoreWriter(path, int(description["size"])) as writer:
                collect(plan, writer, workers, show_progress)
                writer.commit(
                    plan.source,
                    key,
                    splits_present=plan.splits_present,
                    n_levels=plan.n_levels,
                    extra={"kind": kind, "options": options},
                )
        except BaseException:
            for folder in made:  # a failed build leaves no cache folder it made (deepest first)
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        built = open_store(path, key)
        if built is None:
            raise OSError(f"{path}: the slice store just written cannot be read back")
        return built
