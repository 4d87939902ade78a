"""Atomic file writes: write to a temporary file in the same folder, then rename.

A process killed at any moment leaves either the old complete file or the new complete
file, never a half-written one under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed onto `path`.

    On any exception the temporary file is removed and `path` is left untouched.
    """
    path = Path(path)
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {path.parent} is a file, not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in DISK_FULL:  # the writer (PIL, numpy...) names no file: name the target
            raise OSError(e.errno, f"cannot write {path}: {e.strerror} (is the disk full?)") from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp_path)` and move the result onto `path` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _check_parts(path: Path, what: str) -> None:
    """Up to the nearest part of `path` that exists: no link to nothing, and that part a folder."""
    for part in (path, *path.parents):
        if part.is_symlink() and not part.exists():
            raise FileNotFoundError(
                f"{what} {path}: {part} is a link to {os.readlink(part)}, which does not exist; "
                "expected a folder (new or existing)"
            )
        if part.exists():
            if not part.is_dir():
                where = "" if part == path else f" (its parent {part} is a file)"
                raise NotADirectoryError(
                    f"{what} {path} is not a folder{where}; expected a folder (new or existing)"
                )
            return


def output_folder(path: str | Path, what: str = "--out") -> Path:
    """`path` as a Path for a folder to write into (new or existing), checked before any work.

    Raises, naming `what` (the flag or role of the folder): NotADirectoryError when the path,
    or the nearest part of it that exists, is a file; FileNotFoundError when a part of it is a
    link to nothing; OSError when the missing folders cannot be made (the attempt is undone, so
    nothing is left behind) or an existing one cannot be written to."""
    path = Path(path)
    try:
        _check_parts(path, what)
    except (NotADirectoryError, FileNotFoundError):
        raise
    except OSError as e:  # e.g. a name too long for the file system
        raise OSError(f"{what} {path}: cannot use this path ({e.strerror})") from None
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise OSError(f"{what} {path}: this folder cannot be written to (permission denied)")
        return path
    made = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True)  # can it be made? undone below: nothing is written before the work
    except OSError as e:
        raise OSError(f"{what} {path}: cannot create this folder ({e.strerror})") from None
    finally:
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
    return path


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete what a killed writer left under `folder`: `.<name>.*.tmp` files of atomic_path
    and `.<name>.*` folders of a bundle swap. Call only when no other process writes there.
    Returns the removed paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = [p for p in folder.rglob(".*.tmp") if p.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    for path in folder.glob(".*_Model.*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
