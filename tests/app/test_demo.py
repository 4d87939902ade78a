"""The main job: `brainvq demo --quick` end to end on the CPU (the slowest test of the suite)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from PIL import Image
from tiny import PRIOR_KEYS, VQVAE_KEYS

from brainvq.app.cli import main


def test_quick_demo_writes_every_figure_report_and_metrics(tmp_path: Path, capsys) -> None:
    run = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "report.html" in out and "SSIM" in out  # the results table
    figures = sorted((run / "figures").glob("*.png"))
    assert len(figures) >= 9, [f.name for f in figures]
    for fig in figures:
        with Image.open(fig) as im:
            im.verify()
        with Image.open(fig) as im:
            assert min(im.size) >= 100, fig.name
    history = json.loads((run / "vqvae" / "history.json").read_text(encoding="utf-8"))
    with Image.open(run / "figures" / "training.gif") as gif:
        assert gif.n_frames == len(history) == 3
    html = (run / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]+)"', html)
    assert len(sources) >= 10
    for src in sources:
        assert (run / src).is_file(), src
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert all(k in metrics["vqvae"] for k in VQVAE_KEYS)
    assert all(k in metrics["prior"] for k in PRIOR_KEYS)
