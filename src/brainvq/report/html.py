"""The run report: one self-contained HTML page with metrics, figures, configuration, timings.

The page loads nothing from the network (no scripts, fonts or stylesheets from elsewhere).
Figures are referenced by paths relative to the page, so the run folder can be zipped and
opened anywhere, or embedded as base64 data with `embed_images=True` for a single-file page.
Every piece of text is HTML-escaped.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from brainvq.atomic import atomic_write_text
from brainvq.report.summary import summary_rows
from brainvq.report.tables import metric_sections

IMAGE_TYPES = {
    ".png": "image/png",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 0; color: #1d1d1f; background: #fafafa; line-height: 1.45; }
main { max-width: 1250px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { margin-bottom: 0.2rem; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
.generated { color: #666; margin-top: 0; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: 0.4rem 0 1rem; background: white; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.7rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.meaning { color: #555; font-size: 0.92em; }
table.results { width: 100%; }
table.results th.section { background: #e8eef6; text-align: left; }
th { background: #f0f0f0; }
figure { margin: 1.2rem 0 2rem; background: white; padding: 0.8rem; border: 1px solid #e4e4e4; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: #444; margin-top: 0.5rem; }
pre { background: white; border: 1px solid #ddd; padding: 0.8rem; overflow-x: auto; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _plain(obj: Any) -> Any:
    """Config values as YAML-safe builtins (tuples -> lists, paths and others -> str)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def _format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _image_src(path: Path, page_dir: Path, embed: bool) -> str:
    if embed:
        mime = IMAGE_TYPES.get(path.suffix.lower())
        if mime is None:
            raise ValueError(f"cannot embed {path}: expected one of {sorted(IMAGE_TYPES)}")
        return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    relative = Path(os.path.relpath(path.resolve(), page_dir.resolve())).as_posix()
    return urllib.parse.quote(relative)


def _metrics_html(metrics: Mapping[str, Any]) -> list[str]:
    parts = []
    for name, rows in metric_sections(metrics):
        if name:
            parts.append(f"<h3>{_e(name)}</h3>")
        parts.append("<table><tr><th>metric</th><th>value</th></tr>")
        parts += [f'<tr><td>{_e(k)}</td><td class="num">{_e(v)}</td></tr>' for k, v in rows]
        parts.append("</table>")
    return parts or ["<p>No metrics.</p>"]


def _results_html(metrics: Mapping[str, Any]) -> list[str]:
    """The headline metrics, each with its reference and meaning, a section per stage."""
    rows = summary_rows(metrics)
    if not rows:
        return ["<p>No evaluated stage yet: no results to show.</p>"]
    parts = [
        '<table class="results"><tr><th>metric</th><th>value</th><th>reference</th>'
        "<th>what it means</th></tr>"
    ]
    section = None
    for row in rows:
        if row.section != section:
            parts.append(f'<tr><th class="section" colspan="4">{_e(row.section)}</th></tr>')
            section = row.section
        parts.append(
            f'<tr><td>{_e(row.metric)}</td><td class="num">{_e(row.value)}</td>'
            f'<td>{_e(row.reference)}</td><td class="meaning">{_e(row.meaning)}</td></tr>'
        )
    parts.append("</table>")
    return parts


def _figures_html(figures: Sequence[tuple[Path, str]], page_dir: Path, embed: bool) -> list[str]:
    parts = []
    for path, caption in figures:
        src = _image_src(Path(path), page_dir, embed)
        parts.append(
            f'<figure><img src="{_e(src)}" alt="{_e(caption)}" loading="lazy">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    return parts or ["<p>No figures.</p>"]


def _timings_html(timings: Mapping[str, float]) -> list[str]:
    if not timings:
        return ["<p>No timings recorded.</p>"]
    parts = ["<table><tr><th>stage</th><th>seconds</th><th>time</th></tr>"]
    for stage, seconds in timings.items():
        s = float(seconds)
        parts.append(
            f'<tr><td>{_e(stage)}</td><td class="num">{s:.2f}</td>'
            f'<td class="num">{_e(_format_seconds(s))}</td></tr>'
        )
    parts.append("</table>")
    return parts


def write_report(
    out_html: str | Path,
    *,
    title: str,
    metrics: Mapping[str, Any],
    config: Mapping[str, Any],
    figures: Sequence[tuple[str | Path, str]],
    timings: Mapping[str, float],
    notes: Sequence[str] = (),
    embed_images: bool = False,
) -> Path:
    """Write the report page at `out_html` and return its path.

    metrics: nested dict: the headline results first (brainvq.report.summary), then one table
    per nested dict;
    config: the run configuration, shown as YAML; figures: (image path, one line saying what
    it shows), in display order; timings: stage -> seconds; notes: free text lines.
    Raises FileNotFoundError naming the first figure that does not exist (nothing is written).
    """
    out_html = Path(out_html)
    figure_list = [(Path(p), str(caption)) for p, caption in figures]
    for path, _ in figure_list:
        if not path.is_file():
            raise FileNotFoundError(f"report figure {path} does not exist (for {out_html})")
    page_dir = out_html.parent
    config_yaml = yaml.safe_dump(_plain(config), sort_keys=False, default_flow_style=False)
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        ("results", "Results", _results_html(metrics)),
        ("figures", "Figures", _figures_html(figure_list, page_dir, embed_images)),
        ("metrics", "All metrics", _metrics_html(metrics)),
        ("timings", "Timings", _timings_html(timings)),
        ("config", "Configuration", [f"<pre>{_e(config_yaml)}</pre>"]),
    ]
    if notes:
        sections.append(
            ("notes", "Notes", ["<ul>", *(f"<li>{_e(n)}</li>" for n in notes), "</ul>"])
        )
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{STYLE}</style></head>",
        "<body><main>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="generated">Generated {_e(generated)} by brainvq</p>',
        "<nav>" + "".join(f'<a href="#{key}">{name}</a>' for key, name, _ in sections) + "</nav>",
    ]
    for key, name, body in sections:
        lines += [f'<section id="{key}">', f"<h2>{name}</h2>", *body, "</section>"]
    lines += ["</main></body>", "</html>", ""]
    return atomic_write_text(out_html, "\n".join(lines))
