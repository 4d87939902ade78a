"""Every bad input, one clear answer: each row is a command line a new user could type, run
through the real CLI; each must end in exit code 2 and one line `brainvq <command>: error: ...`
that names the flag or the file and what was expected, with no stray blank line on stdout,
nothing written to --out and nothing changed in the run it reads. (Config files, output paths
that are files and full disks: test_bad_input.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data.files import write_png

from brainvq.app.cli import main

SEED_RULE = "--seed: expected an integer seed in [0, 4294967295]"
MINUTES = "expected a number of minutes in"

# (command line with {placeholders}, the expected exit code, a fragment of the error line)
CASES = {
    "checkpoint that is a text file": (
        "export --from-ckpt {text} --out {out}",
        2,
        "notes.txt is not a readable PyTorch checkpoint (KeyError",
    ),
    "checkpoint that is other text": (
        "export --from-ckpt {other_text} --out {out}",
        2,
        "other.txt was refused: torch.load(weights_only=True) cannot read it",
    ),
    "prune for infinite minutes": (
        "prune --run {run} --amount 0.3 --finetune-minutes inf --out {out}",
        2,
        f"--finetune-minutes: {MINUTES} [0,",
    ),
    "prune for nan minutes": (
        "prune --run {run} --amount 0.3 --finetune-minutes nan --out {out}",
        2,
        "--finetune-minutes",
    ),
    "prune amount 1": (
        "prune --run {run} --amount 1 --finetune-minutes 0 --out {out}",
        2,
        "--amount: expected a number in [0, 1), got 1",
    ),
    "tune trials of infinite minutes": (
        "tune --stage vqvae --data demo --out {out} --trial-minutes inf",
        2,
        f"--trial-minutes: {MINUTES} (0,",
    ),
    "tune trials of nan minutes": (
        "tune --stage vqvae --data demo --out {out} --trial-minutes nan",
        2,
        "--trial-minutes",
    ),
    "tune for no minutes": (
        "tune --stage vqvae --data demo --out {out} --max-minutes 0",
        2,
        f"--max-minutes: {MINUTES} (0,",
    ),
    "sample at infinite temperature": (
        "sample --run {run} --out {out} --temperature inf",
        2,
        "--temperature: expected a finite number > 0, got inf",
    ),
    "complete at zero temperature": (
        "complete --run {run} --input {png} --keep-rows 2 --temperature 0 --out {out}",
        2,
        "--temperature: expected a finite number > 0",
    ),
    "export calibrated on no slices": (
        "export --run {run} --quantize int8-static --calibration 0 --out {out}",
        2,
        "--calibration: expected an integer in [1,",
    ),
    "sample seed -1": ("sample --run {run} --out {out} --seed -1", 2, SEED_RULE),
    "anomaly seed -5": ("anomaly --run {run} --input {png} --out {out} --seed -5", 2, SEED_RULE),
    "complete seed -1": (
        "complete --run {run} --input {png} --keep-rows 2 --seed -1 --out {out}",
        2,
        SEED_RULE,
    ),
    "tune seed -1": ("tune --stage vqvae --data demo --out {out} --seed -1", 2, SEED_RULE),
    "train seed -1": ("train vqvae --data demo --out {out} --seed -1", 2, SEED_RULE),
    "seed beyond 64 bits": (
        f"sample --run {{run}} --out {{out}} --seed {2**70}",
        2,
        f"{SEED_RULE}, got {2**70}",
    ),
    "seed that is not a number": ("sample --run {run} --out {out} --seed one", 2, SEED_RULE),
    "sample out under a link to nothing": (
        "sample --run {run} --out {dangling}/x",
        2,
        "--out {dangling}/x: {dangling} is a link to",
    ),
    "anomaly out under a link to nothing": (
        "anomaly --run {run} --input {png} --out {dangling}/x",
        2,
        "is a link to",
    ),
    "export out under a link to nothing": (
        "export --run {run} --out {dangling}/x",
        2,
        "--out {dangling}/x",
    ),
    "reconstruct out with a name too long": (
        "reconstruct --model {run} --input {png} --out {long}",
        2,
        "--out {long}: cannot",
    ),
    "reconstruct no slices": (
        "reconstruct --model {run} --input {png} --out {out} --limit 0",
        2,
        "--limit: expected an integer in [1,",
    ),
    "reconstruct -1 slices": (
        "reconstruct --model {run} --input {png} --out {out} --limit -1",
        2,
        "--limit: expected an integer in [1,",
    ),
    "train config that is not text": (
        "train vqvae --data demo --config {binary} --out {out}",
        2,
        "binary.yaml: not a YAML text file (not UTF-8",
    ),
    "tune config that is not text": (
        "tune --stage vqvae --data demo --config {binary} --out {out}",
        2,
        "binary.yaml: not a YAML text file",
    ),
    "complete a folder": (
        "complete --run {run} --input {folder} --keep-rows 2 --out {out}",
        2,
        "--input {folder} is a folder; expected one PNG/JPEG slice",
    ),
    "reconstruct an image that does not decode": (
        "reconstruct --model {run} --input {broken} --out {out}",
        2,
        "broken.png: cannot decode image (not a format PIL recognises)",
    ),
    "sample no slices": ("sample --run {run} --out {out} --n 0", 2, "--n: expected an integer"),
    "anomaly alpha 1": (
        "anomaly --run {run} --input {png} --out {out} --alpha 1",
        2,
        "--alpha: expected a number in (0, 1), got 1",
    ),
    "anomaly scan alpha 2": (
        "anomaly --run {run} --input {png} --out {out} --scan-alpha 2",
        2,
        "--scan-alpha: expected a number in (0, 1), got 2",
    ),
    "sample level -1": ("sample --run {run} --out {out} --level -1", 2, "--level: expected"),
    "threads 0": ("sample --run {run} --out {out} --threads 0", 2, "--threads: expected"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    (root / "notes.txt").write_text("hello world\n")  # torch.load: KeyError
    (root / "other.txt").write_text("not a checkpoint\n")  # torch.load: an unpickling error
    (root / "binary.yaml").write_bytes(b"vqvae:\n  channels: \xff\xfe\x00\x81\n")
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "dangling").symlink_to(root / "nowhere" / "at all")
    folder = root / "slices"
    folder.mkdir()
    slice_ = (np.arange(32 * 32).reshape(32, 32) % 251).astype(np.uint8)
    png = write_png(root / "case_1_slice_3.nii.png", slice_)
    write_png(folder / "case_1_slice_4.nii.png", slice_)
    return {
        "text": root / "notes.txt",
        "other_text": root / "other.txt",
        "binary": root / "binary.yaml",
        "broken": root / "broken.png",
        "dangling": root / "dangling",
        "folder": folder,
        "png": png,
        "long": root / ("x" * 300),
    }


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_input_gets_one_line_naming_it(
    case: str,
    fake_run: Path,
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    line, expected_code, fragment = CASES[case]
    values = {**inputs, "run": fake_run, "out": tmp_path / "out"}
    argv = [word.format(**values) for word in line.split()]
    fragment = fragment.format(**values)
    before = snapshot(fake_run)
    try:
        code = main(argv)
    except SystemExit as e:  # refused while parsing the flags
        code = e.code
    out, err = capsys.readouterr()
    err = err.strip()
    assert code == expected_code, f"exit {code}: {err}"
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"brainvq {argv[0]}: error: "), err
    assert fragment in err, f"{fragment!r} not in: {err}"
    assert "BytesIO" not in err and "[Errno" not in err, err
    assert "" not in out.splitlines(), f"a blank line on stdout: {out!r}"
    assert not (tmp_path / "out").exists()
    assert snapshot(fake_run) == before
