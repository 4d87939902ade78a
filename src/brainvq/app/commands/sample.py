"""`brainvq sample` and `brainvq complete`: generate slices, or whole subjects (`--subjects N`),
with a run's prior."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from brainvq.inference.sampling_options import SamplingOptions

N = 16  # slices drawn when --n is not given


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate brain slices or whole subjects with a run's prior")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--n", type=int, help=f"samples (per level with --levels all; default {N})")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--level",
        type=int,
        help="axial level to generate (conditional priors; default: levels spread over the range)",
    )
    which.add_argument("--levels", choices=["all"], help="n samples at every axial level")
    which.add_argument(
        "--subjects",
        type=int,
        help="whole subjects, slice by slice from the lowest level up (a prior trained with "
        "prior: {neighbour: previous}): NIfTI volumes, montages, orthogonal views",
    )
    p.add_argument(
        "--first-level", type=int, default=0, help="with --subjects: the lowest slice's level"
    )
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--sampler",
        choices=["cached", "naive", "wavefront"],
        help="default: cached for slices, wavefront (every slice at once) for --subjects",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads while sampling (default: 1 for a few maps, every core for many)",
    )
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=run_sample)

    c = sub.add_parser(
        "complete", help="keep the top latent rows of a real slice and sample the rest"
    )
    c.add_argument("--run", type=Path, required=True)
    c.add_argument("--input", type=Path, required=True, help="a PNG slice")
    c.add_argument("--keep-rows", type=int, required=True, help="latent rows to keep")
    c.add_argument("--n", type=int, default=4)
    c.add_argument("--level", type=int, help="level of the input (default: from its file name)")
    c.add_argument("--temperature", type=float, default=1.0)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", type=Path, required=True)
    c.set_defaults(func=run_complete)


def sample_options(args: argparse.Namespace) -> SamplingOptions:
    """How `brainvq sample` draws: --temperature, --top-k, --seed, --sampler (none given: the
    default of what is drawn, cached for slices, wavefront for --subjects)."""
    from brainvq.inference.sampling_options import SamplingOptions

    return SamplingOptions(
        temperature=args.temperature, top_k=args.top_k, seed=args.seed, sampler=args.sampler
    )


def run_sample(args: argparse.Namespace) -> int:
    if args.subjects is not None:
        return run_subjects(args)
    from brainvq.app.writers import sample_to_folder

    if args.sampler == "wavefront":
        raise ValueError("--sampler wavefront draws whole subjects: give --subjects N")
    if args.first_level:
        raise ValueError("--first-level goes with --subjects N")
    written = sample_to_folder(
        args.run,
        args.out,
        n=N if args.n is None else args.n,
        level=args.level,
        all_levels=args.levels == "all",
        options=sample_options(args),
        threads=args.threads,
    )
    print(f"wrote {len(written)} files to {args.out} (grid.png, manifest.csv: output, level, seed)")
    return 0


def run_subjects(args: argparse.Namespace) -> int:
    from brainvq.app.subjects import subjects_to_folder

    if args.n is not None:
        raise ValueError("--n counts slices; with --subjects N, N is the number of subjects")
    written, space = subjects_to_folder(
        args.run,
        args.out,
        args.subjects,
        first_level=args.first_level,
        options=sample_options(args),
        threads=args.threads,
    )
    print(
        f"wrote {args.subjects} subjects ({len(written)} files) to {args.out}: "
        "subject_XXX.nii.gz, _montage.png, _views.png, subjects.json, manifest.csv"
    )
    print(f"affine: {space.source}")
    return 0


def run_complete(args: argparse.Namespace) -> int:
    from brainvq.app.writers import complete_to_folder
    from brainvq.inference.sampling_options import SamplingOptions

    written, level = complete_to_folder(
        args.run,
        args.input,
        args.out,
        keep_rows=args.keep_rows,
        n=args.n,
        level=args.level,
        options=SamplingOptions(temperature=args.temperature, seed=args.seed),
    )
    source = (
        ""
        if level is None
        else f" at level {level}"
        + (" (from --level)" if args.level is not None else " (from the file name)")
    )
    print(f"wrote {len(written)} files to {args.out}{source}")
    return 0
