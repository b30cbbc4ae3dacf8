"""Reading images: which files are images, what is wrong with one, and decoding one to RGB.

The index checks every image once with `inspect_image`; training decodes with `decode_rgb`, into
the sample's slot of the batch when the loader gives one (see fer_lightning/data/loaders.py).
`read_image_file` is the guarded read both the index and predict start from: only regular files
of at most `MAX_IMAGE_BYTES` are read, and an image whose header claims more than
`MAX_IMAGE_PIXELS` is refused before any decode (a few kilobytes can claim 30000x30000 pixels,
which OpenCV, capped at 2^30 pixels, would allocate 2.7 GB for).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fer_lightning.data.odd_files import OddFile, read_regular

# The file suffixes of images, in datasets and in folders given to inference (any case).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

# A 100-megapixel photograph passes; decoded as BGR it takes 300 MB.
MAX_IMAGE_PIXELS = 100_000_000
MAX_IMAGE_BYTES = 256 * 2**20

# What `inspect_image` can find wrong with an image file; each keeps the sample out of all splits.
IMAGE_PROBLEMS = {
    "empty_file": "image file of 0 bytes",
    "unreadable_image": "image that does not decode",
    "truncated_image": "image whose data ends early",
    "too_many_pixels": f"image whose header claims over {MAX_IMAGE_PIXELS // 10**6} megapixels "
    "(not decoded)",
}


def _jpeg_or_png_truncated(data: bytes) -> bool:
    """True when a JPEG lacks its end-of-image marker or a PNG its IEND chunk.

    OpenCV decodes a truncated JPEG without an error (the missing rows come out grey), so the
    check has to look at the bytes themselves.
    """
    if data.startswith(b"\xff\xd8"):
        return not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return not data.endswith(b"IEND\xaeB`\x82")
    return False


def _too_many_pixels(data: bytes) -> bool:
    """True when the header claims more than MAX_IMAGE_PIXELS; read by Pillow, which parses only
    the header on open. A header Pillow cannot read is left to the decoder to judge."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Image.DecompressionBombError:
            return True
        except Exception:  # Pillow's format plugins raise many types on garbage
            return False
    return width * height > MAX_IMAGE_PIXELS


def read_image_file(path: str | Path) -> tuple[str | None, bytes]:
    """(problem kind or None, the file's bytes) without decoding: an odd entry (a kind of
    fer_lightning/data/odd_files.py), an empty file, or too many pixels is a kind, with no bytes."""
    try:
        data = read_regular(path, MAX_IMAGE_BYTES)
    except OddFile as odd:
        return odd.kind, b""
    if not data:
        return "empty_file", b""
    if _too_many_pixels(data):
        return "too_many_pixels", b""
    return None, data


def decode_bytes(data: bytes, flag: int) -> np.ndarray | None:
    """``cv2.imdecode``, None for what does not decode (OpenCV raises for some malformed data)."""
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    except cv2.error:
        return None


def decode_checked(path: str | Path) -> tuple[str | None, np.ndarray | None]:
    """(problem kind or None, the image as stored, or None when there is a problem): every check
    of `IMAGE_PROBLEMS` and `read_image_file`, then a full decode, channels and depth unchanged."""
    kind, data = read_image_file(path)
    if kind is None and _jpeg_or_png_truncated(data):
        kind = "truncated_image"
    image = None if kind else decode_bytes(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        return kind or "unreadable_image", None
    return None, image


def inspect_image(path: str | Path) -> tuple[str | None, int, int, int]:
    """(problem kind or None, height, width, channels) of one image file, by a full decode."""
    kind, image = decode_checked(path)
    if image is None:
        return kind, 0, 0, 0
    channels = 1 if image.ndim == 2 else image.shape[2]
    return None, image.shape[0], image.shape[1], channels


# The scale bits of OpenCV's IMREAD_REDUCED_* flags (the GRAYSCALE variants carry no colour bit),
# to combine with IMREAD_COLOR_RGB.
_REDUCE_2, _REDUCE_4 = cv2.IMREAD_REDUCED_GRAYSCALE_2, cv2.IMREAD_REDUCED_GRAYSCALE_4


def decode_rgb(
    path: str, size: int, stored_side: int, out: np.ndarray | None = None
) -> np.ndarray | None:
    """An image as uint8 RGB (size, size, 3), written into ``out`` when given (a sample's slot in a
    batch), or None when it no longer decodes.

    libjpeg writes RGB directly (no BGR->RGB pass), and when the stored image is at least twice
    (four times) the training size it decodes at half (a quarter) resolution, about 30% faster.
    An image that decodes at the training size goes straight into ``out``: no new array, no copy.
    """
    flag, scale = cv2.IMREAD_COLOR_RGB, 1
    if stored_side >= 4 * size:
        flag, scale = flag | _REDUCE_4, 4
    elif stored_side >= 2 * size:
        flag, scale = flag | _REDUCE_2, 2
    if out is not None and -(-stored_side // scale) == size and _decode_into(path, flag, out):
        return out
    image = cv2.imread(path, flag)
    if image is None:
        return None
    if image.shape[0] != size or image.shape[1] != size:
        shrink = image.shape[0] > size
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        return cv2.resize(image, (size, size), dst=out, interpolation=interpolation)
    if out is None:
        return image
    out[...] = image
    return out


# Not a colour a decode is likely to leave in an image's last pixel (see _decode_into).
_MARK = (1, 254, 3)


def _decode_into(path: str, flag: int, out: np.ndarray) -> bool:
    """Decodes into ``out``; False when that did not happen, for the caller to decode anew.

    ``cv2.imread(path, dst)`` says nothing when it cannot open or parse a file: it leaves ``dst``
    as it was. Marking the last pixel first tells, since a decode writes every pixel. An image
    whose last pixel is the mark costs one more decode, not a wrong answer. An image of another
    size than the index says (not square, or changed since) raises instead.
    """
    last = out[-1, -1]
    last[:] = _MARK
    try:
        cv2.imread(path, out, flag)
    except cv2.error:
        return False
    return last.tobytes() != bytes(_MARK)
