"""Decoding 2D images to 8-bit grayscale and resizing them to the working size.

Every 2D source (OASIS PNGs, PNG/JPEG folders) goes through `decode_image` then
`resize_square`, so all sources see the same conversions and the same box filter.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# How each PIL mode is turned into 8-bit grayscale; the text becomes a note in `inspect`.
_CONVERSIONS = {
    "RGB": "RGB converted to grayscale (ITU-R 601 luma)",
    "RGBA": "RGBA converted to grayscale (ITU-R 601 luma, alpha dropped)",
    "LA": "grayscale+alpha converted to grayscale (alpha dropped)",
    "P": "palette images converted to grayscale",
    "PA": "palette+alpha images converted to grayscale (alpha dropped)",
    "1": "1-bit images converted to 8-bit grayscale",
    "CMYK": "CMYK converted to grayscale",
    "YCbCr": "YCbCr converted to grayscale",
}
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
SIXTEEN_BIT_NOTE = "16-bit images scaled to 8-bit (each image's maximum -> 255)"


@dataclass(frozen=True)
class DecodedImage:
    """One decoded slice: pixels (H, W) uint8 and the conversion applied (None if none)."""

    pixels: np.ndarray
    conversion: str | None


def is_image_name(name: str) -> bool:
    """True if `name` has a PNG/JPEG suffix (case-insensitive)."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def decode_image(data: bytes, name: str) -> DecodedImage:
    """Decode PNG/JPEG bytes to 8-bit grayscale.

    Args:
        data: the file's bytes.
        name: the file name, used in error messages.
    Returns:
        DecodedImage with pixels (H, W) uint8 and the conversion note, if any.
    Raises:
        ValueError naming `name` if the bytes are not a complete, readable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return _to_gray(im)
    except UnidentifiedImageError:  # its message names PIL's in-memory buffer, not the file
        raise ValueError(
            f"{name}: cannot decode image (not a format PIL recognises); expected a complete "
            "PNG or JPEG file"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(
            f"{name}: cannot decode image ({e}); expected a complete PNG or JPEG file"
        ) from None


def _to_gray(im: Image.Image) -> DecodedImage:
    if im.mode == "L":
        return DecodedImage(np.asarray(im, dtype=np.uint8).copy(), None)
    if im.mode in _SIXTEEN_BIT:
        wide = np.asarray(im, dtype=np.float64)
        top = wide.max()
        scaled = wide * (255.0 / top) if top > 0 else wide
        return DecodedImage(np.clip(np.round(scaled), 0, 255).astype(np.uint8), SIXTEEN_BIT_NOTE)
    note = _CONVERSIONS.get(im.mode, f"{im.mode} images converted to grayscale")
    rgb = im if im.mode == "RGB" else im.convert("RGB")
    return DecodedImage(np.asarray(rgb.convert("L"), dtype=np.uint8).copy(), note)


def pad_to_square(pixels: np.ndarray) -> np.ndarray:
    """Centre `pixels` (H, W) on a zero (black) square canvas of side max(H, W)."""
    h, w = pixels.shape
    side = max(h, w)
    if h == w:
        return pixels
    out = np.zeros((side, side), dtype=pixels.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = pixels
    return out


def resize_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize a square uint8 image (S, S) to (size, size).

    Shrinking by an integer factor f averages each f x f block exactly (rounded half up),
    so 256 -> 128 is the mean of each 2x2 block. Other shrink factors use PIL's BOX
    resample (area averaging); enlarging uses bilinear interpolation.
    """
    side = pixels.shape[0]
    if pixels.shape != (side, side):
        raise ValueError(f"resize_square expects a square image, got shape {pixels.shape}")
    if side == size:
        return pixels
    if side > size and side % size == 0:
        f = side // size
        blocks = pixels.reshape(size, f, size, f).astype(np.uint32)  # (size, f, size, f)
        total = blocks.sum(axis=(1, 3))  # (size, size)
        n = f * f
        return ((total + n // 2) // n).astype(np.uint8)
    resample = Image.BOX if side > size else Image.BILINEAR
    return np.asarray(Image.fromarray(pixels).resize((size, size), resample), dtype=np.uint8)


def to_working_size(pixels: np.ndarray, size: int) -> tuple[np.ndarray, bool]:
    """Pad (H, W) uint8 to a square if needed, then resize to (size, size).

    Returns the image and whether padding was needed (the caller records a note).
    """
    padded = pad_to_square(pixels)
    return resize_square(padded, size), padded is not pixels


PADDED_NOTE = "non-square images padded with black to a square before resizing"


def prepare_slice(data: bytes, name: str, size: int) -> tuple[np.ndarray, list[str]]:
    """Decode image bytes and bring them to (size, size) uint8.

    Returns the slice and the notes that apply to it (conversions, padding).
    """
    decoded = decode_image(data, name)
    pixels, padded = to_working_size(decoded.pixels, size)
    notes = [decoded.conversion] if decoded.conversion else []
    if padded:
        notes.append(PADDED_NOTE)
    return pixels, notes
