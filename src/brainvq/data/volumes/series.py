"""Which DICOM series of a study is the T1 volume to answer for.

A scanner's export holds every series of a session: localisers, the T1, T2, FLAIR, diffusion,
field maps. One scan per study (StudyInstanceUID) is chosen, in steps, each kept only if it
leaves a series:

1. left out: localisers and scouts (ImageType holds LOCALIZER, or the description says
   localizer / scout / survey / 3-plane), and series too thin to be a volume (fewer than
   MIN_SLICES slices: a single 2D image is one);
2. the only series left is chosen, whatever it is called (the user gave its folder);
3. otherwise the ones whose description or protocol names a T1 (T1_NAMES: T1, MPRAGE, MP-RAGE,
   MPR, SPGR, FSPGR, BRAVO, TFE, 3D T1); with none, the ones that name no other contrast
   (OTHER_NAMES: T2, FLAIR, diffusion, BOLD, ...);
4. then the 3D acquisitions (MRAcquisitionType 3D);
5. then, a weaker hint, the one with both the shortest TR and the shortest TE.

When more than one series is still plausible, nothing is guessed: the refusal lists the series
(number, description, slices) and says how to pick one (`--series N|UID`, or the series' own
folder as the input). `--series` takes a SeriesNumber (in every study that has it) or a
SeriesInstanceUID. The scan's notes say which series was chosen and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from brainvq.data.volumes.dicom import DicomSeries

MIN_SLICES = 20
LOCALISER_NAMES = re.compile(r"locali[sz]er|scout|survey|3[-_ ]?pl(ane)?\b|aahead", re.I)
T1_NAMES = re.compile(
    r"(?<![A-Za-z0-9])(t1|t1w|mp-?rage|mpr|spgr|fspgr|bravo|tfe|3d[-_ ]?t1)(?![A-Za-z0-9])"
    r"|t1[-_ ]?(w|weighted|mprage|mpr|se|tse|ffe|vibe|space|3d)",
    re.I,
)
OTHER_NAMES = re.compile(
    r"(?<![A-Za-z0-9])(t2|t2w|t2\*|flair|dwi|dti|diff|adc|trace|bold|fmri|rest|swi|pd|pdw|"
    r"asl|perf|field ?map|gre_field|b0|tof|angio)(?![A-Za-z])",
    re.I,
)


@dataclass(frozen=True)
class Choice:
    """The series chosen in one study and why; left_out: (series, why) of the study's others."""

    series: DicomSeries
    why: str
    left_out: tuple[tuple[DicomSeries, str], ...] = field(default_factory=tuple)

    @property
    def note(self) -> str:
        text = f"DICOM {self.series.label} chosen: {self.why}"
        if self.left_out:
            text += "; left out " + ", ".join(f"{s.label} ({why})" for s, why in self.left_out)
        return text


def is_localiser(series: DicomSeries) -> str | None:
    """Why `series` is not a volume to answer for (step 1), or None."""
    title = f"{series.description} {series.protocol}"
    if "LOCALIZER" in series.image_type or LOCALISER_NAMES.search(title):
        return "localiser"
    if series.n_slices == 1:
        return "a single 2D image"
    if series.n_slices < MIN_SLICES:
        return f"fewer than {MIN_SLICES} slices"
    return None


def names_t1(series: DicomSeries) -> bool:
    return bool(T1_NAMES.search(series.description) or T1_NAMES.search(series.protocol))


def names_other(series: DicomSeries) -> bool:
    title = f"{series.description} {series.protocol}"
    return not names_t1(series) and bool(OTHER_NAMES.search(title))


def _by_name(pool: list[DicomSeries]):
    """Step 3: (test, why a series it keeps is kept, why one it drops is dropped)."""
    if any(names_t1(s) for s in pool):
        return names_t1, "named T1", "not named T1"
    return (lambda s: not names_other(s)), "named as no other contrast", "named another contrast"


def _by_acquisition(pool: list[DicomSeries]):
    """Step 4."""
    return (lambda s: s.acquisition == "3D"), "a 3D acquisition", "not a 3D acquisition"


def _by_times(pool: list[DicomSeries]):
    """Step 5: the series with both the shortest TR and the shortest TE (none when a time is
    missing, or when no series has both)."""
    if any(s.tr_ms is None or s.te_ms is None for s in pool):
        return (lambda s: True), "", ""
    shortest = (min(s.tr_ms for s in pool), min(s.te_ms for s in pool))
    return (lambda s: (s.tr_ms, s.te_ms) == shortest), "the shortest TR and TE", "a longer TR or TE"


def choose_in_study(study: list[DicomSeries], where: Path) -> Choice:
    """The T1 series of one study (module docstring, steps 1-5); ValueError naming `where` and
    listing the series when none or several are plausible."""
    out: dict[str, str] = {}  # uid -> why it was left out
    candidates = []
    for s in study:
        why = is_localiser(s)
        if why:
            out[s.uid] = why
        else:
            candidates.append(s)
    if not candidates:
        listing = ", ".join(f"{s.label}: {out[s.uid]}" for s in study)
        raise ValueError(
            f"{where}: no volume to answer for: {listing}; expected a T1 series of at least "
            f"{MIN_SLICES} slices or a 3D volume"
        )
    reasons = ["the only series that is a volume"] if len(candidates) == 1 else []
    for step in (_by_name, _by_acquisition, _by_times):
        if len(candidates) == 1:
            break
        keep, kept_why, dropped_why = step(candidates)
        kept = [s for s in candidates if keep(s)]
        if kept and len(kept) < len(candidates):
            reasons.append(kept_why)
            out.update({s.uid: dropped_why for s in candidates if s not in kept})
            candidates = kept
    if len(candidates) > 1:
        raise ValueError(
            f"{where}: {len(candidates)} plausible T1 series, cannot tell which to use: "
            f"{_listing(candidates, where)}; pick one with --series NUMBER (or --series UID), or "
            "give --input the series' own folder"
        )
    chosen = candidates[0]
    left_out = tuple((s, out[s.uid]) for s in study if s is not chosen)
    return Choice(chosen, ", ".join(reasons), left_out)


def _listing(series: list[DicomSeries], where: Path | None = None) -> str:
    """`series 5 'T1 MPRAGE' (176 slices), ...`, with each one's folder when they differ."""
    folders = {s.folder for s in series}
    items = []
    for s in series:
        item = s.label
        if where is not None and len(folders) > 1:
            item += f" in {s.folder}"
        items.append(item)
    return ", ".join(items)


def choose(series: list[DicomSeries], where: Path, pick: str | None = None) -> list[Choice]:
    """One Choice per study (steps 1-5), or the series `pick` names (a SeriesNumber, in every
    study that has one, or a SeriesInstanceUID); ValueError naming `where` when a study has no
    plausible series or several, or `pick` matches none (or several in one study)."""
    if pick is not None:
        pick = str(pick).strip()
        matched = [s for s in series if s.uid == pick or str(s.number) == pick]
        if not matched:
            raise ValueError(
                f"{where}: --series {pick} matches no series (by SeriesNumber or "
                f"SeriesInstanceUID); found {_listing(series, where)}"
            )
        studies: dict[str, list[DicomSeries]] = {}
        for s in matched:
            studies.setdefault(s.study, []).append(s)
        for group in studies.values():
            if len(group) > 1:
                raise ValueError(
                    f"{where}: --series {pick} matches {len(group)} series of one study "
                    f"({_listing(group, where)}); give its SeriesInstanceUID instead"
                )
        return [Choice(group[0], f"--series {pick}") for group in studies.values()]
    studies = {}
    for s in series:
        studies.setdefault(s.study, []).append(s)
    return [choose_in_study(group, where) for group in studies.values()]
