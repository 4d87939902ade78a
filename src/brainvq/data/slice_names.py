"""Slice file names that carry a subject and a level: the one parser every reader uses.

OASIS-1 names its slices `case_<subject>_slice_<k>.nii.png`; other folders use
`<subject>_slice_<k>`, `<subject>-slice-<k>` or `<subject>_slice<k>` (any case, anything that
does not start with a digit after k). A folder of such files and one such file given alone
get the same subject and level, because both read the name here.
"""

from __future__ import annotations

import re
from pathlib import Path

OASIS_NAME = re.compile(r"^case_(?P<subject>[^_/]+)_slice_(?P<slice>\d+)\.nii\.png$")
SUBJECT_SLICE = re.compile(
    r"^(?P<subject>.+?)[_-]slice[_-]?(?P<slice>\d+)(?:\D.*)?$", re.IGNORECASE
)


def parse_subject_slice(name: str | Path) -> tuple[str, int] | None:
    """(subject, slice level) from a file name or path (its last part is read), or None if
    the name carries neither."""
    base = Path(str(name)).name
    m = OASIS_NAME.match(base) or SUBJECT_SLICE.match(base)
    return (m["subject"], int(m["slice"])) if m else None


def level_from_name(name: str | Path) -> int | None:
    """The slice level k a file name carries (`parse_subject_slice`), or None."""
    parsed = parse_subject_slice(name)
    return None if parsed is None else parsed[1]
