"""SliceStore: a SliceSet on disk, written a part at a time and trained from without loading it.

A store is a folder of plain `.npy` files: `images.npy` (N, H, W) uint8 and one array per
column (`split`, `subject`, `filename` fixed-width str, `level` int16), plus `store.json`
(its key, source, notes, splits, levels). The arrays open memory-mapped, so a SliceSet of
any size costs no memory until it is read, and any numpy or torch code reads it as an array.
Plain `.npy` was chosen by measurement over Zarr and LitData (docs/scale.md, "Cohorts larger
than memory"): it has no decoding step, so a random batch costs one read per slice.

Writing is bounded in memory: images are appended to `images.npy` as parts arrive (its header,
of fixed length, is rewritten with the final count at the end) and the other columns are
spooled as JSON lines and turned into fixed-width arrays chunk by chunk. Everything is written
in a temporary folder beside the store (`.<name>.<host>-<pid>.tmp`) and renamed onto the
store's name when complete: a store is either whole or absent, and a writer killed midway
leaves only a temporary folder that no reader opens (the next writer on this machine removes
it once its process is gone).

`RowReader` reads rows by position with `os.preadv` (one call per run of consecutive rows)
rather than through the memory map: pages read through a map count in the process's resident
memory until the kernel reclaims them, pages read with a read call stay in the page cache
only, so training reads a store of any size in flat resident memory.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import socket
import struct
from pathlib import Path
from typing import Any

import numpy as np

from brainvq.data.builder import LevelTally, NoteCounter, SlicePart
from brainvq.data.sliceset import SliceSet

STORE_FORMAT = 1
IMAGES = "images.npy"
COLUMNS = ("split", "subject", "level", "filename")
DESCRIPTION = "store.json"
SPOOL = "columns.jsonl"
HEADER_BYTES = 128  # the .npy header is padded to this, so the count can be rewritten in place
FILL_CHUNK = 65536  # rows per step when the spooled columns are turned into arrays


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """A .npy (version 1.0) header of exactly HEADER_BYTES for a C-order array."""
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    body_len = HEADER_BYTES - 10
    if len(text) + 1 > body_len:
        raise ValueError(f"array shape {shape} is too long for a {HEADER_BYTES}-byte header")
    return (
        b"\x93NUMPY\x01\x00"
        + struct.pack("<H", body_len)
        + (text.ljust(body_len - 1) + "\n").encode()
    )


def temporary_path(path: Path) -> Path:
    """Where a writer of `path` writes first: `.<name>~<host>~<pid>.tmp` beside it."""
    return path.parent / f".{path.name}~{socket.gethostname()}~{os.getpid()}.tmp"


def _writer_gone(tmp: Path) -> bool:
    """Whether the writer of temporary folder `tmp` ran on this machine and has ended."""
    parts = tmp.name.removesuffix(".tmp").split("~")
    if len(parts) != 3 or parts[1] != socket.gethostname() or not parts[2].isdigit():
        return False
    pid = parts[2]
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_abandoned(directory: Path) -> list[Path]:
    """Remove the temporary store folders under `directory` whose writer (on this machine)
    is gone; a folder another live process is writing is left alone. Returns the removed."""
    if not directory.is_dir():
        return []
    removed = [p for p in directory.glob(".*.tmp") if p.is_dir() and _writer_gone(p)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


class StoreWriter(NoteCounter):
    """Writes a store at `path` a part at a time; `commit` makes it visible. As a context
    manager, an exception (or a kill) leaves no store behind."""

    def __init__(self, path: Path | str, size: int) -> None:
        super().__init__()
        self.path = Path(path)
        self.size = size
        self.tmp = temporary_path(self.path)
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self._images = open(self.tmp / IMAGES, "wb")  # noqa: SIM115 (closed in commit/abort)
        self._images.write(npy_header((0, size, size), np.uint8))
        self._spool = open(self.tmp / SPOOL, "w", encoding="utf-8")  # noqa: SIM115
        self._widths = dict.fromkeys(("split", "subject", "filename"), 1)
        self.tally = LevelTally()

    def __len__(self) -> int:
        return self.tally.n

    def add_part(self, part: SlicePart) -> None:
        """Append the slices of `part` and count its notes."""
        part.check(self.size)
        self._images.write(np.ascontiguousarray(part.images).tobytes())
        level = [int(v) for v in part.level]
        for row in zip(part.split, part.subject, level, part.filename, strict=True):
            self._spool.write(json.dumps(row) + "\n")
        for name, values in (("split", part.split), ("subject", part.subject)):
            self._widths[name] = max(self._widths[name], *(len(v) for v in values), 1)
        self._widths["filename"] = max(
            self._widths["filename"], *(len(v) for v in part.filename), 1
        )
        self.tally.add(list(part.split), level)
        for text, example in part.counted:
            self.count(text, example)

    def _columns(self) -> None:
        """The spooled columns -> split/subject/filename (fixed-width str) and level (int16)
        .npy files, appended FILL_CHUNK rows at a time."""
        n = self.tally.n
        dtypes = {
            name: np.dtype(np.int16 if name == "level" else f"<U{self._widths[name]}")
            for name in COLUMNS
        }
        files = {name: open(self.tmp / f"{name}.npy", "wb") for name in COLUMNS}  # noqa: SIM115
        try:
            for name, f in files.items():
                f.write(npy_header((n,), dtypes[name]))
            with open(self.tmp / SPOOL, encoding="utf-8") as spool:
                while rows := [
                    json.loads(line) for _, line in zip(range(FILL_CHUNK), spool, strict=False)
                ]:
                    for i, name in enumerate(COLUMNS):
                        files[name].write(np.asarray([r[i] for r in rows], dtypes[name]).tobytes())
        finally:
            for f in files.values():
                f.close()
        (self.tmp / SPOOL).unlink()

    def commit(
        self,
        source: str,
        key: str,
        splits_present: tuple[str, ...] | None = None,
        n_levels: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Finish the files, describe the store and rename it onto `path`. If another process
        committed the same store first, keep theirs. Returns `path`."""
        self._spool.close()
        self._images.seek(0)
        self._images.write(npy_header((self.tally.n, self.size, self.size), np.uint8))
        self._images.flush()
        os.fsync(self._images.fileno())
        self._images.close()
        self._columns()
        description = {
            "format": STORE_FORMAT,
            "key": key,
            "source": source,
            "notes": list(self.notes),
            "splits_present": list(
                self.tally.splits_present() if splits_present is None else splits_present
            ),
            "n_levels": self.tally.n_levels() if n_levels is None else int(n_levels),
            "n_images": self.tally.n,
            "size": self.size,
            **(extra or {}),
        }
        (self.tmp / DESCRIPTION).write_text(json.dumps(description, indent=2) + "\n")
        for name in (*COLUMNS, "images", "store"):
            file = self.tmp / (DESCRIPTION if name == "store" else f"{name}.npy")
            with open(file, "rb") as f:
                os.fsync(f.fileno())
        try:
            os.rename(self.tmp, self.path)
        except OSError:  # the same store, committed by another process meanwhile
            if not (self.path / DESCRIPTION).is_file():
                raise
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Close and remove everything written."""
        for f in (self._images, self._spool):
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is not None and self.tmp.exists():
            self.abort()


def describe(path: Path) -> dict[str, Any] | None:
    """store.json of the store at `path`, None when there is no complete store."""
    try:
        return json.loads((Path(path) / DESCRIPTION).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def open_store(path: Path | str, key: str | None = None) -> SliceSet | None:
    """The SliceSet of the store at `path`, its arrays memory-mapped (read-only); None when
    there is no complete store there, it is of another format, or (when given) another key."""
    path = Path(path)
    meta = describe(path)
    if meta is None or meta.get("format") != STORE_FORMAT or (key and meta.get("key") != key):
        return None
    try:
        images = np.load(path / IMAGES, mmap_mode="r", allow_pickle=False)
        columns = {
            c: np.load(path / f"{c}.npy", mmap_mode="r", allow_pickle=False) for c in COLUMNS
        }
        if images.shape != (meta["n_images"], meta["size"], meta["size"]):
            return None
        return SliceSet(
            images=images,
            **columns,
            source=meta["source"],
            notes=tuple(meta["notes"]),
            splits_present=tuple(meta["splits_present"]),
            n_levels=int(meta["n_levels"]),
            content_key=meta["key"],
        )
    except (OSError, ValueError, KeyError):
        return None


def file_position(array: np.ndarray) -> tuple[str, int] | None:
    """(file, byte offset of its first element) when `array` is a C-contiguous memory map of a
    file or a view of one (a split of a store), else None."""
    if not (isinstance(array, np.memmap) and array.filename and array.flags.c_contiguous):
        return None
    base = array.base
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is None:
        return None
    start = array.ctypes.data - np.frombuffer(base, np.uint8).ctypes.data
    mapped_from = array.offset - array.offset % mmap.ALLOCATIONGRANULARITY
    return str(array.filename), mapped_from + start


class RowReader:
    """Rows of an (N, ...) array by position: from the file with preadv when the array is a
    whole .npy memory map (resident memory stays flat, see the module docstring), else by
    indexing. Safe to use from DataLoader workers: each process opens its own descriptor."""

    def __init__(self, array: np.ndarray) -> None:
        self.n = len(array)
        self.shape = tuple(array.shape[1:])
        self.dtype = array.dtype
        self.row_bytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self.file: str | None = None
        self.offset = 0
        self.array: np.ndarray | None = array
        position = file_position(array) if hasattr(os, "preadv") else None
        if position is not None:
            self.file, self.offset, self.array = position[0], position[1], None
        self._fd = -1
        self._pid = -1

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": -1, "_pid": -1}

    def _descriptor(self) -> int:
        if self._pid != os.getpid():
            self._fd, self._pid = os.open(self.file, os.O_RDONLY), os.getpid()
        return self._fd

    def read(self, rows: np.ndarray) -> np.ndarray:
        """rows (k,) int -> (k, *shape) array of those rows, in that order (a copy)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.array is not None:
            return np.array(self.array[rows])
        out = np.empty((len(rows), *self.shape), dtype=self.dtype)
        if len(rows) == 0:
            return out
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        buffer = np.empty_like(out)
        flat = buffer.reshape(len(rows), -1).view(np.uint8)
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        fd = self._descriptor()
        for start, end in zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True):
            view = memoryview(flat[start:end]).cast("B")
            at = self.offset + int(ordered[start]) * self.row_bytes
            done = 0
            while done < len(view):
                got = os.preadv(fd, [view[done:]], at + done)
                if got == 0:
                    raise ValueError(
                        f"{self.file}: ends before row {int(ordered[end - 1])}; the store is "
                        "damaged (delete it to rebuild)"
                    )
                done += got
        out[order] = buffer
        return out
