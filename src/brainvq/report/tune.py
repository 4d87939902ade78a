"""The figures and report notes of a tuning study, from RUN/tune/summary.json and
RUN/tune/trials.csv only (brainvq.app.tune writes both after every trial).

- optimisation history: every trial's objective by trial number (complete, pruned at the
  value it had reached, failed on the axis), and the best so far;
- parameter importances (Optuna's evaluator, over the completed trials);
- the objective against each of the two most important parameters.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from brainvq.atomic import atomic_path
from brainvq.run import RunLayout, read_json

TuneFigure = tuple[Path, str]  # (image file, one line saying what it shows)
DPI = 110
STYLE = {  # state -> (marker, colour, legend label)
    "complete": ("o", "#1f77b4", "complete"),
    "pruned": ("x", "#ff7f0e", "pruned (value when stopped)"),
}


def read_trials(path: Path) -> list[dict[str, Any]]:
    """RUN/tune/trials.csv as dicts; `objective` a float or None, `number` an int."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["number"] = int(row["number"])
        row["objective"] = float(row["objective"]) if row.get("objective") else None
    return rows


def _save(fig: Figure, out: Path) -> Path:
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return out


def _metric_label(summary: dict[str, Any]) -> str:
    better = "higher" if summary["direction"] == "maximize" else "lower"
    return f"{summary['metric']} ({better} is better)"


def plot_history(summary: dict[str, Any], rows: list[dict[str, Any]], out: Path) -> Path:
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    for state, (marker, colour, label) in STYLE.items():
        points = [(r["number"], r["objective"]) for r in rows if r["state"] == state]
        points = [p for p in points if p[1] is not None]
        if points:
            ax.scatter(*zip(*points, strict=True), marker=marker, color=colour, label=label)
    complete = sorted(
        (r["number"], r["objective"])
        for r in rows
        if r["state"] == "complete" and r["objective"] is not None
    )
    if complete:
        better = max if summary["direction"] == "maximize" else min
        best, xs, ys = None, [], []
        for number, value in complete:
            best = value if best is None else better(best, value)
            xs.append(number)
            ys.append(best)
        ax.step(xs, ys, where="post", color="#2ca02c", label="best so far")
    failed = [r["number"] for r in rows if r["state"] == "fail"]
    if failed:
        ax.scatter(
            failed,
            [0] * len(failed),
            marker="v",
            color="#d62728",
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label="failed",
        )
    baseline = summary.get("baseline") or {}
    if baseline.get("value") is not None:
        ax.axhline(baseline["value"], color="grey", linestyle=":", label="baseline (base config)")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(_metric_label(summary))
    ax.set_title(f"Optimisation history: study {summary['study']!r}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, out)


def plot_importances(importances: dict[str, float], out: Path) -> Path:
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = Figure(figsize=(7.5, max(2.5, 0.9 + 0.4 * len(items))))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items], [v for _, v in items], color="#1f77b4")
    ax.set_xlabel("importance (share of the objective's variation)")
    ax.set_title("Parameter importances (completed trials)")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out)


def _numeric(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _param_panel(ax: Axes, key: str, spec: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    categorical = spec.get("kind") == "choices"
    labels = [str(c) for c in spec.get("choices", [])]
    for state, (marker, colour, label) in STYLE.items():
        points = []
        for r in rows:
            if r["state"] != state or r["objective"] is None or not r.get(key):
                continue
            x = labels.index(r[key]) if categorical and r[key] in labels else _numeric(r[key])
            if x is not None:
                points.append((x, r["objective"]))
        if points:
            ax.scatter(*zip(*points, strict=True), marker=marker, color=colour, label=label)
    if categorical:
        ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
        ax.set_xlim(-0.5, len(labels) - 0.5)
    elif spec.get("log"):
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.grid(alpha=0.3)


def plot_top_params(
    summary: dict[str, Any], rows: list[dict[str, Any]], keys: list[str], out: Path
) -> Path:
    fig = Figure(figsize=(5.0 * len(keys), 4.0))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        _param_panel(ax, key, summary["space"].get(key, {}), rows)
        if i == 0:
            ax.set_ylabel(_metric_label(summary))
            ax.legend(fontsize=8)
    fig.suptitle("The objective against the most important parameters")
    return _save(fig, out)


def draw_tune_figures(layout: RunLayout, fig_dir: Path) -> list[TuneFigure]:
    """The study's figures, written to `fig_dir`; [] when RUN has no study."""
    summary = read_json(layout.tune_summary)
    rows = read_trials(layout.tune_trials)
    if not summary or not rows:
        return []
    fig_dir = Path(fig_dir)
    counts = summary["counts"]
    minutes = summary.get("trial_minutes")
    budget = f"{minutes:g}-minute trials" if minutes else "trials bounded by their epochs"
    figures = [
        (
            plot_history(summary, rows, fig_dir / "tune_history.png"),
            f"Tuning the {summary['stage']} stage ({budget}): {summary['metric']} of each of "
            f"the {len(rows)} trials ({counts.get('complete', 0)} complete, "
            f"{counts.get('pruned', 0)} pruned, {counts.get('fail', 0)} failed) and the best "
            "so far",
        )
    ]
    importances = summary.get("importances") or {}
    if importances:
        figures.append(
            (
                plot_importances(importances, fig_dir / "tune_importances.png"),
                "How much each tuned parameter explains of the objective over the completed "
                "trials (Optuna's importance evaluator, normalised to sum 1)",
            )
        )
        keys = [k for k, _ in sorted(importances.items(), key=lambda kv: -kv[1])][:2]
        figures.append(
            (
                plot_top_params(summary, rows, keys, fig_dir / "tune_top_params.png"),
                f"{summary['metric']} against the {len(keys)} most important parameters "
                f"({', '.join(keys)}), one point per complete or pruned trial",
            )
        )
    return figures


def tune_notes(layout: RunLayout) -> list[str]:
    """The report's lines about the study: what was searched, the best trial, the baseline."""
    summary = read_json(layout.tune_summary)
    if not summary:
        return []
    counts, metric = summary["counts"], summary["metric"]
    notes = [
        f"Tuning: study {summary['study']!r} of the {summary['stage']} stage searched "
        f"{len(summary['space'])} parameters ({', '.join(summary['space'])}) for "
        f"{metric} ({summary['direction']}); {counts.get('complete', 0)} complete, "
        f"{counts.get('pruned', 0)} pruned and {counts.get('fail', 0)} failed trials."
    ]
    best, baseline = summary.get("best"), summary.get("baseline") or {}
    if best:
        values = ", ".join(f"{k} = {v}" for k, v in best["params"].items())
        notes.append(
            f"Best trial {best['number']}: {metric} {best['value']:.4f} with {values}; its "
            f"config is {layout.tune_best.relative_to(layout.root)} and its model "
            f"{best['run']}."
        )
    if baseline.get("value") is not None:
        notes.append(
            f"Baseline trial {baseline['number']} (the base config's own values, same budget): "
            f"{metric} {baseline['value']:.4f}."
        )
    return notes
