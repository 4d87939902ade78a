"""The training GIF has exactly one labelled frame per epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from brainvq.report.gif import make_training_gif


def write_frames(folder: Path, images: np.ndarray, same: bool = False) -> list[Path]:
    """One PNG per image (or the first image every time if `same`), upscaled to 256 px."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        pixels = np.round((images[0] if same else img) * 255).astype(np.uint8)
        path = folder / f"epoch_{i:03d}.png"
        Image.fromarray(pixels).resize((256, 256)).save(path)
        paths.append(path)
    return paths


def frames_of(path: Path) -> list[np.ndarray]:
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]


def test_gif_has_one_frame_per_path(tmp_path: Path, images: np.ndarray) -> None:
    paths = write_frames(tmp_path / "frames", images[:5])
    out = tmp_path / "figures" / "training.gif"
    assert make_training_gif(paths, out, duration_ms=200) == out
    frames = frames_of(out)
    assert len(frames) == 5
    height, width, _ = frames[0].shape
    assert width == 256 and height > 256  # the label strip sits above the 256x256 frame
    for frame, path in zip(frames, paths, strict=True):  # each frame unchanged below its strip
        source = np.asarray(Image.open(path).convert("RGB")).astype(int)
        assert np.abs(frame[height - 256 :].astype(int) - source).max() <= 8
    with Image.open(out) as gif:
        assert gif.info["duration"] == 200 and gif.info["loop"] == 0


def test_identical_frames_are_kept_apart_by_their_labels(
    tmp_path: Path, images: np.ndarray
) -> None:
    paths = write_frames(tmp_path / "frames", images[:4], same=True)
    out = tmp_path / "same.gif"
    frames = frames_of(make_training_gif(paths, out, epochs=[0, 1, 2, 3]))
    assert len(frames) == 4
    corner = [f[:20, :100].astype(int) for f in frames]  # where "epoch N" is drawn
    assert all(np.abs(a - b).sum() > 0 for a, b in zip(corner[:-1], corner[1:], strict=True))
    body = [f[128:, :].astype(int) for f in frames]  # below the label the frames are equal
    assert all(np.abs(a - body[0]).max() <= 8 for a in body)


def test_frames_of_another_size_are_resized(tmp_path: Path, images: np.ndarray) -> None:
    paths = write_frames(tmp_path / "frames", images[:2])
    Image.open(paths[1]).resize((300, 200)).save(paths[1])
    frames = frames_of(make_training_gif(paths, tmp_path / "mixed.gif"))
    assert frames[0].shape == frames[1].shape and frames[0].shape[1] == 256


def test_gif_errors(tmp_path: Path, images: np.ndarray) -> None:
    paths = write_frames(tmp_path / "frames", images[:3])
    out = tmp_path / "bad.gif"
    with pytest.raises(FileNotFoundError, match="missing.png"):
        make_training_gif([*paths, tmp_path / "missing.png"], out)
    with pytest.raises(ValueError, match="empty"):
        make_training_gif([], out)
    with pytest.raises(ValueError, match="distinct"):
        make_training_gif(paths, out, epochs=[1, 1, 2])
    with pytest.raises(ValueError, match="2 epochs for 3 frames"):
        make_training_gif(paths, out, epochs=[1, 2])
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
