"""Decoding to 8-bit grayscale and resizing with a box filter."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from brainvq.data.imaging import (
    PADDED_NOTE,
    SIXTEEN_BIT_NOTE,
    decode_image,
    prepare_slice,
    resize_square,
)


def png_bytes(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def test_box_downsample_is_the_rounded_mean_of_each_block() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(256, 256), dtype=np.uint8)
    out = resize_square(x, 128)
    blocks = x.reshape(128, 2, 128, 2).astype(np.float64).mean(axis=(1, 3))
    assert out.dtype == np.uint8 and out.shape == (128, 128)
    np.testing.assert_array_equal(out, np.floor(blocks + 0.5).astype(np.uint8))
    quarter = resize_square(x, 64)
    np.testing.assert_array_equal(
        quarter, np.floor(x.reshape(64, 4, 64, 4).astype(np.float64).mean(axis=(1, 3)) + 0.5)
    )


def test_non_integer_factor_uses_pil_box() -> None:
    x = np.random.default_rng(1).integers(0, 256, size=(200, 200), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(x).resize((128, 128), Image.BOX))
    np.testing.assert_array_equal(resize_square(x, 128), expected)


def test_same_size_is_unchanged_and_enlarging_works() -> None:
    x = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert resize_square(x, 8) is x
    assert resize_square(x, 16).shape == (16, 16)


@pytest.mark.parametrize(
    ("mode", "note_part"),
    [
        ("RGB", "RGB converted"),
        ("RGBA", "RGBA converted"),
        ("P", "palette"),
        ("LA", "alpha dropped"),
    ],
)
def test_colour_modes_are_converted_with_a_note(mode: str, note_part: str) -> None:
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # pure red -> luma 0.299 * 200 = 60
    im = Image.fromarray(rgb).convert(mode)
    decoded = decode_image(png_bytes(im), "x.png")
    assert decoded.pixels.shape == (16, 16) and decoded.pixels.dtype == np.uint8
    assert note_part in decoded.conversion
    if mode in ("RGB", "RGBA"):
        assert abs(int(decoded.pixels[0, 0]) - 60) <= 1


def test_sixteen_bit_is_scaled_by_its_maximum_with_a_note() -> None:
    wide = np.zeros((8, 8), dtype=np.uint16)
    wide[0, 0], wide[1, 1] = 4000, 2000
    decoded = decode_image(png_bytes(Image.fromarray(wide)), "wide.png")
    assert decoded.conversion == SIXTEEN_BIT_NOTE
    assert decoded.pixels[0, 0] == 255 and decoded.pixels[1, 1] == 128 and decoded.pixels[2, 2] == 0


def test_grayscale_png_and_jpeg_decode_without_note() -> None:
    gray = np.full((10, 10), 77, dtype=np.uint8)
    assert decode_image(png_bytes(Image.fromarray(gray)), "g.png").conversion is None
    jpeg = decode_image(png_bytes(Image.fromarray(gray), "JPEG"), "g.jpg")
    assert jpeg.conversion is None and abs(int(jpeg.pixels.mean()) - 77) <= 2


def test_non_square_is_padded_centred_with_a_note() -> None:
    x = np.full((16, 8), 255, dtype=np.uint8)
    out, notes = prepare_slice(png_bytes(Image.fromarray(x)), "tall.png", 16)
    assert notes == [PADDED_NOTE]
    assert out[:, :4].max() == 0 and out[:, 12:].max() == 0 and out[:, 4:12].min() == 255


def test_truncated_png_names_the_file() -> None:
    data = png_bytes(Image.fromarray(np.zeros((64, 64), dtype=np.uint8)))
    with pytest.raises(ValueError, match=r"broken\.png.*expected a complete PNG"):
        decode_image(data[: len(data) // 2], "broken.png")
