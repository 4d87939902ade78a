"""The results table a reader looks at first: each headline metric of a run with the reference
it needs to be read (uniform and independent NLL, FD ceiling and floor, real slices' level
accuracy) and one line saying what it means. The HTML report and the terminal show the same
rows; metrics.json keeps every number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Row:
    section: str  # "Reconstruction (<split>)" or "Generation"
    metric: str
    value: str
    reference: str
    meaning: str


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def summary_rows(metrics: Mapping[str, Any]) -> list[Row]:
    """Rows for the metrics a run has (none for a stage it has not evaluated)."""
    rows: list[Row] = []
    vq = metrics.get("vqvae") or {}
    if "ssim" in vq:
        volumes = "n_volumes" in vq  # a 3D run: whole volumes coded, scored on three planes
        items = (
            f"{vq['n_volumes']} volumes, {vq.get('n_images', '?')} axial slices"
            if volumes
            else f"{vq.get('n_images', '?')} slices"
        )
        sec = f"Reconstruction ({vq.get('split', '?')}, {items})"
        rows += [
            Row(
                sec,
                "SSIM",
                f"{_f(vq['ssim'], 4)}",
                f"min over slices {_f(vq.get('ssim_min'), 4)}",
                "structural similarity to the original, 1 = identical (11x11 Gaussian window, "
                "sigma 1.5, data range 1)",
            ),
            Row(
                sec,
                "PSNR",
                f"{_f(vq.get('psnr'), 2)} dB",
                "",
                "peak signal-to-noise ratio, data range 1; higher is better",
            ),
            Row(
                sec,
                "MAE",
                _f(vq.get("mae"), 4),
                "",
                "mean absolute error per pixel, intensities in [0, 1]",
            ),
            Row(
                sec,
                "codes used",
                f"{vq.get('codes_used')} of {vq.get('codebook_size')}",
                f"perplexity {_f(vq.get('perplexity'), 1)}",
                "codebook entries this split uses; perplexity = exp(entropy of their use)",
            ),
            Row(
                sec,
                "rate",
                f"{_f(vq.get('bits_per_voxel' if volumes else 'bits_per_pixel'), 4)} bits per "
                + ("voxel" if volumes else "pixel"),
                "",
                "size of the code: latent positions x log2(codebook size) / "
                + ("voxels" if volumes else "pixels"),
            ),
        ]
        rows += [
            Row(
                sec,
                f"SSIM, {plane} slices",
                _f(scores.get("ssim"), 4),
                f"min {_f(scores.get('ssim_min'), 4)}",
                f"every {plane} slice of each reconstructed volume (the SSIM row: axial)",
            )
            for plane, scores in (vq.get("planes") or {}).items()
            if plane != "axial"
        ]
    pr = metrics.get("prior") or {}
    nlls = {
        split: pr[f"nll_bits_per_code_{key}"]
        for split, key in (("validation", "val"), ("test", "test"))
        if pr.get(f"nll_bits_per_code_{key}") is not None
    }
    if nlls:
        (first, value), *rest = nlls.items()
        nll = _f(value) + "".join(f" ({split} {_f(v)})" for split, v in rest)
        reference = ""
        if "uniform_bits_per_code" in pr:
            reference = (
                f"uniform {_f(pr['uniform_bits_per_code'], 2)}; independent positions "
                f"{_f(pr.get('independent_bits_per_code'), 2)}"
            )
        if pr.get("nll_bits_per_code_val_alone") is not None:
            reference += f"; without the slice below {_f(pr['nll_bits_per_code_val_alone'])}"
        rows.append(
            Row(
                "Generation (PixelCNN prior)",
                f"NLL, {first}",
                f"{nll} bits per code",
                reference,
                "bits the prior needs per latent position; lower is better",
            )
        )
    if "fd" in pr:
        sec = "Generation (PixelCNN prior)"
        reference = pr.get("generation_reference_split", "test")
        accuracy = pr.get("level_accuracy")
        rows += [
            Row(
                sec,
                "Frechet distance",
                _f(pr["fd"], 2),
                f"ceiling (real vs real) {_f(pr.get('fd_ceiling'), 2)}; floor (independent "
                f"codes) {_f(pr.get('fd_floor'), 2)}",
                f"distance of {pr.get('n_generated')} samples to real {reference} slices in the "
                "level classifier's features; the nearer the ceiling the better",
            ),
            Row(
                sec,
                "level accuracy",
                _f(accuracy) if accuracy is not None else "-",
                f"real slices {_f(pr.get('level_accuracy_real'))}",
                "share of samples the level classifier places within 2 levels of the level "
                "asked for",
            ),
            Row(
                sec,
                "level error",
                f"{_f(pr.get('level_error_mm'), 2)} mm",
                f"real slices {_f(pr.get('level_error_mm_real'), 2)} mm",
                "mean distance between the level the classifier sees in a sample and the level "
                "asked for; lower is better",
            ),
            Row(
                sec,
                "sharpness ratio",
                _f(pr.get("sharpness_ratio")),
                "real slices 1",
                "high-frequency power of samples / real slices; blurry samples fall below 1",
            ),
            Row(
                sec,
                "memorisation",
                _f(pr.get("memorisation_ssim_mean")),
                f"real slices {_f(pr.get('memorisation_ssim_real_mean'))}; near copies "
                f"{pr.get('near_copies')} of {pr.get('n_generated')}",
                "mean SSIM of each sample to its nearest training slice; far above real "
                "slices would mean copying",
            ),
        ]
    if "subject_ssim_distance" in pr:
        whole = pr.get("subjects_from") == "neighbour"
        rows.append(
            Row(
                "Generation (PixelCNN prior)",
                "adjacent-slice SSIM" + (" (subjects)" if whole else " (independent slices)"),
                _f(pr["subject_adjacent_ssim"]),
                f"real subjects {_f(pr.get('subject_adjacent_ssim_real'))}; distance "
                f"{_f(pr['subject_ssim_distance'])}",
                "SSIM of slice k and k + 1 of generated volumes vs real ones, and the "
                "Wasserstein distance of the two distributions (0: alike)",
            )
        )
    return rows


def summary_table(metrics: Mapping[str, Any], title: str) -> Table:
    table = Table(title=Text(title), title_style="bold", show_lines=False)
    for column, style in (("metric", "cyan"), ("value", None), ("reference", "dim")):
        table.add_column(column, style=style, justify="right" if column == "value" else "left")
    section = None
    for row in summary_rows(metrics):
        if row.section != section:
            if section is not None:
                table.add_section()
            table.add_row(Text(row.section, style="bold"), "", "")
            section = row.section
        table.add_row(Text(f"  {row.metric}"), Text(row.value), Text(row.reference))
    return table


def print_summary(metrics: Mapping[str, Any], title: str, console: Console | None = None) -> None:
    """The summary table in the terminal (the full metrics are in RUN/metrics.json)."""
    (console or Console()).print(summary_table(metrics, title))
