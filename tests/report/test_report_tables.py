"""Metrics as text: nested metrics -> sections (floats to 4 significant digits), and the
summary rows of the results table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rich.console import Console

from brainvq.report.summary import print_summary, summary_rows
from brainvq.report.tables import format_value, metric_sections

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


RUN_METRICS = {
    "vqvae": {
        "split": "test",
        "n_images": 256,
        "ssim": 0.95612,
        "ssim_min": 0.9213,
        "psnr": 31.456,
        "mae": 0.01234,
        "codes_used": 500,
        "codebook_size": 512,
        "perplexity": 71.78,
        "bits_per_pixel": 0.5625,
    },
    "prior": {
        "nll_bits_per_code_val": 2.381,
        "nll_bits_per_code_test": 2.3,
        "uniform_bits_per_code": 9.0,
        "independent_bits_per_code": 6.224,
        "fd": 6.694,
        "fd_ceiling": 1.038,
        "fd_floor": 49.08,
        "level_accuracy": 0.75,
        "level_accuracy_real": 0.9688,
        "sharpness_ratio": 0.9441,
        "n_generated": 256,
        "memorisation_ssim_mean": 0.6746,
        "memorisation_ssim_real_mean": 0.7459,
        "near_copies": 0,
    },
}


def test_summary_rows_pair_every_headline_number_with_its_reference() -> None:
    rows = {row.metric: row for row in summary_rows(RUN_METRICS)}
    assert rows["SSIM"].value == "0.9561" and "min over slices 0.9213" in rows["SSIM"].reference
    assert rows["PSNR"].value == "31.46 dB"
    assert rows["codes used"].value == "500 of 512"
    assert rows["NLL, validation"].value == "2.381 (test 2.300) bits per code"
    assert rows["NLL, validation"].reference == "uniform 9.00; independent positions 6.22"
    assert "ceiling (real vs real) 1.04" in rows["Frechet distance"].reference
    assert "floor (independent codes) 49.08" in rows["Frechet distance"].reference
    assert rows["level accuracy"].reference == "real slices 0.969"
    assert all(row.meaning for row in rows.values())
    sections = [row.section for row in summary_rows(RUN_METRICS)]
    assert sections[0].startswith("Reconstruction (test, 256 slices)")
    assert sections[-1] == "Generation (PixelCNN prior)"


def test_summary_of_a_run_without_prior_has_only_reconstruction_rows() -> None:
    rows = summary_rows({"vqvae": RUN_METRICS["vqvae"]})
    assert rows and all(row.section.startswith("Reconstruction") for row in rows)
    assert summary_rows({}) == []


def test_summary_prints_values_literally() -> None:
    console = Console(record=True, width=120, color_system=None)
    print_summary(RUN_METRICS, "Run [bold]x[/bold]", console=console)
    text = console.export_text()
    for expected in ("Run [bold]x[/bold]", "0.9561", "31.46 dB", "2.381", "uniform 9.00"):
        assert expected in text, expected


def test_summary_of_a_3d_run_says_volumes_voxels_and_every_plane() -> None:
    planes = {
        plane: {"ssim": value, "ssim_min": value - 0.1, "n_images": 64}
        for plane, value in (("axial", 0.91), ("coronal", 0.9), ("sagittal", 0.89))
    }
    vq = dict(RUN_METRICS["vqvae"], n_volumes=2, n_images=64, planes=planes)
    vq.update(bits_per_voxel=0.28125, bits_per_pixel=0.28125)
    rows = {row.metric: row for row in summary_rows({"vqvae": vq})}
    assert rows["rate"].value == "0.2812 bits per voxel"
    assert rows["SSIM, coronal slices"].value == "0.9000"
    assert rows["SSIM, sagittal slices"].reference == "min 0.7900"
    assert "SSIM, axial slices" not in rows  # the SSIM row is the axial one
    assert summary_rows({"vqvae": vq})[0].section.startswith("Reconstruction (test, 2 volumes, 64")
