"""The HTML report: self-contained, references only existing files, escapes all text."""

from __future__ import annotations

import base64
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainvq.report.html import write_report


class Collector(HTMLParser):
    """Collects every src/href attribute and the visible text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.links.append((tag, name, value))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: Path) -> Collector:
    collector = Collector()
    collector.feed(page.read_text(encoding="utf-8"))
    return collector


@pytest.fixture
def run_dir(tmp_path: Path, images: np.ndarray) -> Path:
    figures = tmp_path / "run" / "figures"
    figures.mkdir(parents=True)
    pixels = np.round(images * 255).astype(np.uint8)
    Image.fromarray(pixels[0]).save(figures / "recons.png")
    Image.fromarray(pixels[1]).save(figures / "code usage.png")  # a space: must be URL-quoted
    frames = [Image.fromarray(p) for p in pixels[:3]]
    frames[0].save(figures / "training.gif", save_all=True, append_images=frames[1:])
    return tmp_path / "run"


def report_args(run_dir: Path) -> dict:
    return {
        "title": "Run <demo> & friends",
        "metrics": {"seed": 3, "vqvae": {"ssim": 0.912345, "psnr": 31.98765}},
        "config": {
            "model": {"codebook_size": 512, "channels": (32, 64)},
            "data": {"root": run_dir},
        },
        "figures": [
            (run_dir / "figures" / "recons.png", "Reconstructions <b>with</b> SSIM"),
            (run_dir / "figures" / "code usage.png", "Code usage"),
            (run_dir / "figures" / "training.gif", "Training GIF"),
        ],
        "timings": {"vqvae training": 12.345, "prior training": 3725.0},
        "notes": ["a <script>alert(1)</script> note"],
    }


def test_report_references_only_existing_files(run_dir: Path) -> None:
    page = write_report(run_dir / "report.html", **report_args(run_dir))
    assert page == run_dir / "report.html"
    links = parse(page).links
    images = [value for tag, name, value in links if tag == "img"]
    assert len(images) == 3
    for src in images:
        assert not urllib.parse.urlparse(src).scheme, f"not a relative path: {src}"
        assert (run_dir / urllib.parse.unquote(src)).is_file(), src
    # Nothing else is loaded: only in-page anchors besides the images.
    assert all(value.startswith("#") for tag, _, value in links if tag != "img")
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "<link" not in text


def test_report_shows_metrics_config_timings_and_captions(run_dir: Path) -> None:
    page = write_report(run_dir / "report.html", **report_args(run_dir))
    text = "".join(parse(page).text)
    for expected in (
        "vqvae",
        "0.9123",
        "31.99",
        "codebook_size: 512",
        "- 32",
        "12.35",
        "1 h 02 min",
    ):
        assert expected in text, expected
    assert "Reconstructions <b>with</b> SSIM" in text  # shown as text, not as markup
    assert str(run_dir) in text  # a Path in the config is written as a string


def test_report_escapes_text(run_dir: Path) -> None:
    raw = write_report(run_dir / "report.html", **report_args(run_dir)).read_text(encoding="utf-8")
    assert "<script>" not in raw and "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert "<demo>" not in raw and "Run &lt;demo&gt; &amp; friends" in raw
    assert "<b>with</b>" not in raw


def test_missing_figure_raises_and_writes_nothing(run_dir: Path) -> None:
    args = report_args(run_dir)
    args["figures"].append((run_dir / "figures" / "absent.png", "not there"))
    with pytest.raises(FileNotFoundError, match="absent.png"):
        write_report(run_dir / "report.html", **args)
    assert not (run_dir / "report.html").exists()


def test_embedded_report_is_a_single_file(run_dir: Path, tmp_path: Path) -> None:
    args = report_args(run_dir)
    page = write_report(tmp_path / "elsewhere" / "report.html", embed_images=True, **args)
    images = [value for tag, _, value in parse(page).links if tag == "img"]
    assert [src.split(";")[0] for src in images] == ["data:image/png"] * 2 + ["data:image/gif"]
    decoded = base64.b64decode(images[0].split(",", 1)[1])
    assert decoded == (run_dir / "figures" / "recons.png").read_bytes()
