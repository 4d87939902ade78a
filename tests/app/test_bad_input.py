"""Bad input everywhere: nonsense configs and flags, output paths that are files, and a disk that
fills up (a real EFBIG from RLIMIT_FSIZE in a subprocess, not a mock).

Every case must end in one line `brainvq <cmd>: error: ...` naming what was wrong, exit 2, and
leave nothing behind: no RUN/config.yaml for an invalid config, no half-written file under its
final name, no temporary files."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from tiny import TINY_CONFIG

from brainvq.app.cli import main
from brainvq.atomic import atomic_write_bytes
from brainvq.data import load_slices
from brainvq.io.bundle import VQVAE_FOLDER, load_vqvae, save_bundle
from brainvq.models.vqvae import VQVAE, VQVAEConfig
from brainvq.run_config import load_run_config, save_run_config


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run `brainvq argv` in this process: (exit code, stderr stripped). argparse exits count."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err.strip()


def assert_one_line_error(code: int, err: str, command: str, *names: str) -> None:
    assert code == 2, f"exit {code}, stderr: {err}"
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"brainvq {command}: error: "), err
    for name in names:
        assert name in err, f"{name!r} not named in: {err}"


def tiny_config_with(tmp_path: Path, **sections: dict) -> Path:
    """TINY_CONFIG with `sections` merged in (one level deep), written to tmp_path/bad.yaml."""
    doc = yaml.safe_load(TINY_CONFIG.read_text(encoding="utf-8"))
    for name, values in sections.items():
        doc[name] = (
            {**doc.get(name, {}), **values} if isinstance(values, dict) and values else values
        )
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


BAD_CONFIGS = {
    "negative epochs": ({"vqvae_train": {"epochs": -1}}, "vqvae_train.epochs"),
    "K < 2": ({"vqvae": {"codebook_size": 1}}, "vqvae.codebook_size"),
    "size not a multiple of 8": ({"data": {"size": 36}}, "data.size"),
    "unsupported downsample": (
        {"data": {"size": 48}, "vqvae": {"downsample": 16, "channels": [8, 8, 8, 16]}},
        "vqvae.downsample",
    ),
    "downsample 8 without a width per stage": (
        {"data": {"size": 40}, "vqvae": {"downsample": 8}},
        "vqvae.channels",
    ),
    "unknown nested key": ({"vqvae": {"wdith": 3}}, "vqvae.wdith"),
    "unknown top-level key": ({"trainer": {}}, "trainer"),
    "wrong type": ({"vqvae_train": {"lr": "fast"}}, "vqvae_train.lr"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_value_names_the_key_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sections, key = BAD_CONFIGS[case]
    config = tiny_config_with(tmp_path, **sections)
    run = tmp_path / "RUN"
    code, err = cli(["train", "vqvae", "--data", "demo", "--config", config, "--out", run], capsys)
    assert_one_line_error(code, err, "train", key)
    assert not run.exists(), f"{case}: wrote {sorted(p.name for p in run.rglob('*'))}"


def test_downsample_8_with_size_40_is_valid(tmp_path: Path) -> None:
    """data.size must be a multiple of 8, the largest downsampling factor, so every valid size
    suits both factors: 40 with downsample 8 gives 5x5 code maps."""
    path = tiny_config_with(
        tmp_path, data={"size": 40}, vqvae={"downsample": 8, "channels": [8, 8, 16]}
    )
    assert load_run_config(path).vqvae.latent_size == 5


def test_config_that_is_not_a_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "list.yaml"
    config.write_text("- epochs: 3\n- lr: 0.1\n")
    run = tmp_path / "RUN"
    code, err = cli(["train", "vqvae", "--data", "demo", "--config", config, "--out", run], capsys)
    assert_one_line_error(code, err, "train", str(config), "mapping")
    assert not run.exists()


def test_config_that_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    run = tmp_path / "RUN"
    code, err = cli(["train", "vqvae", "--data", "demo", "--config", missing, "--out", run], capsys)
    assert_one_line_error(code, err, "train", str(missing), "not found")
    assert not run.exists()


@pytest.mark.parametrize(
    ("flag", "value", "key"),
    [  # the flag's own rule (brainvq.app.flags), or the config key it sets
        ("--epochs", "0", "--epochs"),
        ("--batch-size", "-3", "--batch-size"),
        ("--size", "30", "--size: expected a positive multiple of 8"),
        ("--lr", "-1", "--lr"),
        ("--devices", "0", "--devices"),
        ("--max-minutes", "inf", "--max-minutes"),
        ("--seed", "-1", "--seed"),
    ],
)
def test_bad_flag_names_the_flag_or_key_and_writes_nothing(
    flag: str, value: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "RUN"
    argv = ["train", "vqvae", "--data", "demo", "--config", TINY_CONFIG, "--out", run, flag, value]
    code, err = cli(argv, capsys)
    assert_one_line_error(code, err, "train", key, value)
    assert not run.exists()


def test_bad_flag_on_an_existing_run_keeps_its_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "RUN"
    save_run_config(load_run_config(TINY_CONFIG), run / "config.yaml")
    before = (run / "config.yaml").read_bytes()
    code, err = cli(["train", "vqvae", "--out", run, "--epochs", "-2"], capsys)
    assert_one_line_error(code, err, "train", "--epochs")
    assert (run / "config.yaml").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_non_integer_flag_is_an_argparse_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = cli(
        ["train", "vqvae", "--data", "demo", "--out", tmp_path / "R", "--epochs", "x"], capsys
    )
    assert code == 2 and "--epochs" in err and "Traceback" not in err
    assert not (tmp_path / "R").exists()


# ----- output paths that are files -------------------------------------------------------------


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "occupied"
    path.write_text("I am a file, not a folder\n")
    return path


def test_train_out_is_a_file(a_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = cli(
        ["train", "vqvae", "--data", "demo", "--config", TINY_CONFIG, "--out", a_file], capsys
    )
    assert_one_line_error(code, err, "train", str(a_file))
    assert a_file.read_text(encoding="utf-8") == "I am a file, not a folder\n"


def test_sample_out_is_a_file(
    fake_run: Path, a_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = cli(["sample", "--run", fake_run, "--n", "1", "--out", a_file], capsys)
    assert_one_line_error(code, err, "sample", str(a_file))
    assert a_file.read_text(encoding="utf-8") == "I am a file, not a folder\n"


def test_reconstruct_out_is_a_file(
    fake_run: Path, a_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    image = tmp_path / "case_001_slice_3.nii.png"
    Image.new("L", (32, 32), 100).save(image)
    argv = [
        "reconstruct",
        "--model",
        fake_run / "vqvae" / VQVAE_FOLDER,
        "--input",
        image,
        "--out",
        a_file,
    ]
    code, err = cli(argv, capsys)
    assert_one_line_error(code, err, "reconstruct", str(a_file))
    assert a_file.read_text(encoding="utf-8") == "I am a file, not a folder\n"


def test_export_out_is_a_file(
    fake_run: Path, a_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = cli(["export", "--run", fake_run, "--out", a_file], capsys)
    assert_one_line_error(code, err, "export", str(a_file))
    assert a_file.read_text(encoding="utf-8") == "I am a file, not a folder\n"


def test_preview_out_under_a_file(a_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = a_file / "grid.png"
    argv = [
        "data",
        "preview",
        "demo",
        "--size",
        "32",
        "--n-levels",
        "2",
        "--no-progress",
        "--out",
        out,
    ]
    code, err = cli(argv, capsys)
    assert_one_line_error(code, err, "data", str(a_file))
    assert a_file.read_text(encoding="utf-8") == "I am a file, not a folder\n"


# ----- a disk that fills: writes beyond LIMIT bytes fail with a real OSError(EFBIG) ----------

LIMIT_PRELUDE = """
import resource, signal
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
"""


def run_limited(code: str, limit: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh Python whose files may not grow beyond `limit` bytes."""
    script = LIMIT_PRELUDE.format(limit=limit) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        cwd=cwd,
        timeout=120,
    )


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_atomic_write_bytes_on_a_full_disk_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    atomic_write_bytes(target, b"old complete contents\n")
    result = run_limited(
        f"""
        from brainvq.atomic import atomic_write_bytes
        try:
            atomic_write_bytes({str(target)!r}, b"x" * 200_000)
        except OSError as e:
            print("errno", e.errno)
        """,
        limit=50_000,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "errno 27", result.stdout  # EFBIG: the write really failed
    assert target.read_bytes() == b"old complete contents\n"
    assert leftovers(tmp_path, {"data.bin"}) == []


def test_save_bundle_on_a_full_disk_keeps_the_old_bundle(tmp_path: Path) -> None:
    small = VQVAEConfig(
        image_size=32, channels=(8, 16), res_blocks=1, res_channels=8, code_dim=8, codebook_size=16
    )
    folder = tmp_path / VQVAE_FOLDER
    save_bundle(folder, VQVAE(small), small, "vqvae", {"tag": "old"})
    size = (folder / "model.safetensors").stat().st_size
    result = run_limited(
        f"""
        from brainvq.io.bundle import save_bundle
        from brainvq.models.vqvae import VQVAE, VQVAEConfig
        big = VQVAEConfig(image_size=32, channels=(64, 128), code_dim=64, codebook_size=512)
        save_bundle({str(folder)!r}, VQVAE(big), big, "vqvae", {{"tag": "new"}})
        """,
        limit=size + 4096,
        cwd=tmp_path,
    )
    assert result.returncode != 0, "the big bundle fit under the limit: the test proves nothing"
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("OSError: cannot write the model bundle") and str(folder) in last, last
    bundle = load_vqvae(folder)
    assert bundle.meta["tag"] == "old" and bundle.config == small
    assert leftovers(tmp_path, {VQVAE_FOLDER}) == []


def test_cli_on_a_full_disk_is_one_line_and_leaves_no_partial_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["data", "preview", "demo", "--size", "32", "--n-levels", "2", "--no-progress"]
    load_slices(
        "demo", size=32, n_levels=2, progress=False
    )  # the cache is written before the limit
    out = tmp_path / "preview.png"
    assert cli([*args, "--out", out], capsys)[0] == 0
    full_size = out.stat().st_size
    out.write_bytes(b"old preview")
    result = run_limited(
        f"""
        import sys
        from brainvq.app.cli import main
        sys.exit(main({[*args, "--out", str(out)]!r}))
        """,
        limit=full_size // 2,
        cwd=tmp_path,
    )
    err = result.stderr.strip()
    assert_one_line_error(result.returncode, err, "data", str(out))
    assert out.read_bytes() == b"old preview"
    assert leftovers(tmp_path, {"preview.png"}) == []
