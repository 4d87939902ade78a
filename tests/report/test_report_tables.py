"""Terminal tables: nested metrics -> sections, floats to 4 significant digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rich.console import Console

from brainvq.report.tables import format_value, metric_sections, metrics_table, print_metrics

METRICS = {
    "seed": 7,
    "vqvae": {"ssim": 0.912345, "psnr": math.inf, "codes": {"used": 371, "perplexity": 201.234}},
    "prior": {"nll_bits_per_code": 3.14159265, "per_image": np.linspace(0.5, 1.0, 50)},
}


def test_format_value() -> None:
    assert format_value(0.123456) == "0.1235"
    assert format_value(np.float32(31.98765)) == "31.99"
    assert format_value(1234567.0) == "1.235e+06"
    assert format_value(12) == "12" and format_value(np.int64(3)) == "3"
    assert format_value(True) == "True"
    assert format_value(math.inf) == "inf" and format_value(math.nan) == "nan"
    assert format_value([0.5, 0.25]) == "[0.5, 0.25]"
    assert format_value(np.ones(10)) == "10 values, mean 1"
    assert format_value(None) == "-" and format_value("[red]x") == "[red]x"


def test_metric_sections_flatten_nested_dicts() -> None:
    sections = dict(metric_sections(METRICS))
    assert list(sections) == ["", "vqvae", "prior"]
    assert sections[""] == [("seed", "7")]
    assert sections["vqvae"] == [
        ("ssim", "0.9123"),
        ("psnr", "inf"),
        ("codes/used", "371"),
        ("codes/perplexity", "201.2"),
    ]
    assert sections["prior"][1] == ("per_image", "50 values, mean 0.75")
    with pytest.raises(ValueError, match="dict"):
        metric_sections([1, 2])


def test_metrics_table_renders_every_value() -> None:
    table = metrics_table(METRICS, "Evaluation")
    assert table.title == "Evaluation"
    assert table.row_count == 1 + (1 + 4) + (1 + 2)  # section headers count as rows
    console = Console(record=True, width=100, color_system=None)
    console.print(table)
    text = console.export_text()
    for expected in ("Evaluation", "vqvae", "prior", "0.9123", "inf", "codes/perplexity", "3.142"):
        assert expected in text


def test_print_metrics_prints_markup_literally() -> None:
    console = Console(record=True, width=100, color_system=None)
    print_metrics({"run": {"name": "[bold]demo[/bold]", "sizes": [1, 2]}}, "Run", console=console)
    text = console.export_text()
    assert "[bold]demo[/bold]" in text and "[1, 2]" in text
