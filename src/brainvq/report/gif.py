"""The training GIF: one frame per epoch (e.g. the same reconstructions after every epoch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from brainvq.atomic import atomic_path


def _label(frame: Image.Image, text: str) -> Image.Image:
    """`frame` (RGB) with a white strip on top holding `text`, so the label hides nothing."""
    size = max(16, frame.height // 22)
    font = ImageFont.load_default(size=size)
    strip = round(1.6 * size)
    labelled = Image.new("RGB", (frame.width, frame.height + strip), "white")
    labelled.paste(frame, (0, strip))
    ImageDraw.Draw(labelled).text(
        (size // 2, strip // 2), text, fill="black", font=font, anchor="lm"
    )
    return labelled


def make_training_gif(
    frame_paths: Sequence[str | Path],
    out: str | Path,
    duration_ms: int = 500,
    epochs: Sequence[int] | None = None,
) -> Path:
    """Animate `frame_paths` (images, one per epoch, in order) into a looping GIF at `out`.

    Each frame gets a strip above it labelled "epoch N", N taken from `epochs` (default 1, 2,
    ...). Frames of a different size from the first are resized to it. The GIF has exactly
    len(frame_paths) frames, which is why epochs must be distinct: GIF writers merge
    identical frames.
    """
    if not frame_paths:
        raise ValueError("make_training_gif: frame_paths is empty")
    if duration_ms <= 0:
        raise ValueError(f"make_training_gif: duration_ms must be > 0, got {duration_ms}")
    labels = list(range(1, len(frame_paths) + 1)) if epochs is None else [int(e) for e in epochs]
    if len(labels) != len(frame_paths):
        raise ValueError(f"make_training_gif: {len(labels)} epochs for {len(frame_paths)} frames")
    if len(set(labels)) != len(labels):
        raise ValueError(f"make_training_gif: epochs must be distinct, got {labels}")
    frames: list[Image.Image] = []
    size: tuple[int, int] | None = None  # of the first frame, before its label strip
    for path, epoch in zip(frame_paths, labels, strict=True):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"make_training_gif: frame {path} does not exist")
        with Image.open(path) as img:
            frame = img.convert("RGB")
        size = size or frame.size
        if frame.size != size:
            frame = frame.resize(size, Image.Resampling.LANCZOS)
        frames.append(_label(frame, f"epoch {epoch}"))
    out = Path(out)
    with atomic_path(out) as tmp:
        frames[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=frames[1:],
            duration=duration_ms,
            loop=0,
        )
    return out
