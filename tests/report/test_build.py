"""build_report on tiny real runs: every figure written and valid, the GIF's frames, a page
that links only to files that exist, and a report for a run that has no prior yet."""

from __future__ import annotations

import json
import re
import shutil
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from tiny import TINY_CONFIG

from brainvq.cli import main
from brainvq.data.sliceset import SliceSet
from brainvq.pipeline import load_run, run_slices
from brainvq.report.build import (
    OASIS_CITATION,
    build_report,
    curve_figures,
    spread_over_levels,
)

VQVAE_FIGURES = {
    "dataset_samples.png",
    "reconstructions.png",
    "ssim_distribution.png",
    "code_usage.png",
    "codebook_pca.png",
    "vqvae_curves.png",
    "training.gif",
}
PRIOR_FIGURES = {"samples.png", "samples_by_level.png", "completions.png", "prior_curves.png"}
LINK = re.compile(r'(?:src|href)="([^"#][^"]*)"')


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two runs with reports: "full" (VQ-VAE 2 epochs, prior 1 epoch) and "vq_only" (the
    same run copied before its prior was trained)."""
    root = tmp_path_factory.mktemp("report_runs")
    # The tiny config without the generation metrics' classifier: they are not in the report.
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["sample"]["n_generation_eval"] = 0
    config_file = root / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(config))
    full, vq_only = root / "full", root / "vq_only"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRAINVQ_CACHE", str(tmp_path_factory.getbasetemp() / "brainvq-cache"))
        args = ["--data", "demo", "--config", str(config_file), "--epochs", "2", "--out", str(full)]
        assert main(["train", "vqvae", *args]) == 0
        shutil.copytree(full, vq_only)
        assert main(["train", "prior", "--run", str(full)]) == 0
        for run in (full, vq_only):
            assert build_report(run) == run / "report.html"
    return {"full": full, "vq_only": vq_only}


def linked_files(html: Path) -> list[Path]:
    """The files the page links to (images and any href), resolved next to the page."""
    links = LINK.findall(html.read_text())
    return [html.parent / urllib.parse.unquote(link) for link in links]


def test_full_run_gets_every_figure_as_a_valid_image(runs: dict[str, Path]) -> None:
    fig_dir = runs["full"] / "figures"
    assert {p.name for p in fig_dir.iterdir()} == VQVAE_FIGURES | PRIOR_FIGURES
    for path in fig_dir.iterdir():
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            width, height = img.size
        # the smallest is the GIF of 2 x 32 px tiny-config slices with a label strip
        assert 150 <= max(width, height) <= 4000 and min(width, height) >= 64, (path, img.size)


def test_gif_has_one_labelled_frame_per_epoch(runs: dict[str, Path]) -> None:
    history = json.loads((runs["full"] / "vqvae" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1]
    with Image.open(runs["full"] / "figures" / "training.gif") as gif:
        assert gif.n_frames == 2
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("L")))
    with Image.open(runs["full"] / "vqvae" / "frames" / "epoch_000.png") as frame:
        assert frames[0].shape[1] == frame.width and frames[0].shape[0] > frame.height  # + label
    assert not np.array_equal(frames[0], frames[1])  # different labels at least


def test_report_links_only_existing_files_and_shows_every_figure(runs: dict[str, Path]) -> None:
    html = runs["full"] / "report.html"
    linked = linked_files(html)
    assert linked and all(p.is_file() for p in linked), [p for p in linked if not p.is_file()]
    assert {p.name for p in linked} == VQVAE_FIGURES | PRIOR_FIGURES
    text = html.read_text()
    metrics = json.loads((runs["full"] / "metrics.json").read_text())
    assert f"{metrics['vqvae']['ssim']:.4g}" in text
    assert f"{metrics['prior']['nll_bits_per_code_test']:.4g}" in text
    assert "Evaluated on the test split: 32 slices of 1 subject." in text
    assert "train_vqvae_s" in text  # timings.json
    assert "codebook_size: 16" in text  # config.yaml
    assert OASIS_CITATION not in text  # demo data


def test_run_without_prior_gets_the_vqvae_report(runs: dict[str, Path]) -> None:
    run = runs["vq_only"]
    assert not (run / "prior").exists()
    assert {p.name for p in (run / "figures").iterdir()} == VQVAE_FIGURES
    linked = linked_files(run / "report.html")
    assert all(p.is_file() for p in linked) and {p.name for p in linked} == VQVAE_FIGURES
    assert "No prior in this run" in (run / "report.html").read_text()


def test_given_slices_are_used_and_oasis_data_is_cited(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["vq_only"], run)
    demo = run_slices(load_run(run), progress=False)
    subject_ids = np.unique(demo.subject, return_inverse=True)[1]  # OASIS ids have no "_"
    levels = demo.slice_index
    names = np.array(
        [f"case_{s:03d}_slice_{k}.nii.png" for s, k in zip(subject_ids, levels, strict=True)]
    )
    oasis_like = SliceSet(
        images=demo.images,
        split=demo.split,
        subject=demo.subject,
        slice_index=demo.slice_index,
        filename=names,
        source="/data/keras_png_slices_data",
        n_levels=demo.n_levels,
    )
    text = build_report(run, sliceset=oasis_like).read_text()
    assert OASIS_CITATION in text
    assert "Data source: /data/keras_png_slices_data" in text


def test_spread_over_levels_covers_levels_and_subjects() -> None:
    levels = np.tile(np.arange(32, dtype=np.int16), 4)  # 4 subjects x 32 levels
    subjects = np.repeat(np.array(["a", "b", "c", "d"]), 32)
    n = len(levels)
    part = SliceSet(
        images=np.zeros((n, 8, 8), np.uint8),
        split=np.full(n, "test"),
        subject=subjects,
        slice_index=levels,
        filename=np.full(n, "x.png"),
        source="test",
    )
    picked = spread_over_levels(part, 10)
    assert len(set(picked.tolist())) == 10
    assert levels[picked].min() == 0 and levels[picked].max() == 31
    assert np.all(np.diff(levels[picked]) >= 0)
    assert len(set(subjects[picked])) == 4
    assert len(spread_over_levels(part.subset(np.arange(3)), 10)) == 3


def test_missing_run_and_bad_history_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        build_report(tmp_path / "nowhere")
    (tmp_path / "vqvae").mkdir()
    (tmp_path / "vqvae" / "history.json").write_text('{"epoch": 0}')
    with pytest.raises(ValueError, match="history.json"):
        curve_figures(tmp_path, tmp_path / "figures")
