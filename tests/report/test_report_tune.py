"""The tuning figures and notes, drawn from hand-written RUN/tune files only (every state a
trial can be in, a log range and a list-valued choice)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from brainvq.report.tune import draw_tune_figures, read_trials, tune_notes
from brainvq.run import RunLayout

CSV = """number,state,objective,minutes,epochs,vqvae_train.lr,vqvae.channels,note
0,complete,0.91,3.1,6,0.002,"[32, 64]",baseline: the base config's values
1,pruned,0.52,1.0,2,0.0001,"[16, 32]",pruned after 35% of its budget
2,complete,0.93,3.0,5,0.004,"[48, 96]",
3,fail,,0.2,,0.5,"[32, 64]",NonFiniteLossError: non-finite loss at step 3
4,running,,,,0.003,"[16, 32]",running (pid 12 on host)
"""


def write_study(layout: RunLayout, importances: dict[str, float]) -> None:
    layout.tune.mkdir(parents=True)
    layout.tune_trials.write_text(CSV)
    summary = {
        "study": "vqvae",
        "stage": "vqvae",
        "metric": "val/ssim",
        "direction": "maximize",
        "trial_minutes": 3.0,
        "space": {
            "vqvae_train.lr": {"kind": "float", "low": 1e-4, "high": 1.0, "log": True},
            "vqvae.channels": {"kind": "choices", "choices": ["[16, 32]", "[32, 64]", "[48, 96]"]},
        },
        "counts": {"complete": 2, "pruned": 1, "fail": 1, "running": 1, "waiting": 0},
        "best": {
            "number": 2,
            "value": 0.93,
            "params": {"vqvae_train.lr": 0.004, "vqvae.channels": "[48, 96]"},
            "run": "tune/trials/2",
        },
        "baseline": {"number": 0, "state": "complete", "value": 0.91},
        "importances": importances,
    }
    layout.tune_summary.write_text(json.dumps(summary))


def test_every_figure_is_drawn_from_the_tune_files(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "run")
    write_study(layout, {"vqvae_train.lr": 0.7, "vqvae.channels": 0.3})
    rows = read_trials(layout.tune_trials)
    assert [r["objective"] for r in rows] == [0.91, 0.52, 0.93, None, None]
    figures = draw_tune_figures(layout, tmp_path / "figs")
    names = [path.name for path, _ in figures]
    assert names == ["tune_history.png", "tune_importances.png", "tune_top_params.png"]
    for path, caption in figures:
        with Image.open(path) as image:
            assert image.width > 300 and image.height > 200
        assert caption
    assert "5 trials (2 complete, 1 pruned, 1 failed)" in figures[0][1]
    assert "(vqvae_train.lr, vqvae.channels)" in figures[2][1]  # most important first


def test_without_importances_only_the_history_is_drawn(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "run")
    write_study(layout, {})
    assert [p.name for p, _ in draw_tune_figures(layout, tmp_path)] == ["tune_history.png"]


def test_notes_name_the_best_and_baseline_trials(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "run")
    assert tune_notes(layout) == [] and draw_tune_figures(layout, tmp_path) == []
    write_study(layout, {})
    notes = " ".join(tune_notes(layout))
    assert "Best trial 2: val/ssim 0.9300" in notes and "tune/best.yaml" in notes
    assert "Baseline trial 0" in notes and "0.9100" in notes
