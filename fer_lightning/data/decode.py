"""Reading images: which files are images, what is wrong with one, and decoding one to RGB.

The index checks every image once with `inspect_image`; training decodes with `decode_rgb`, into
the sample's slot of the batch when the loader gives one (see fer_lightning/data/loaders.py).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# The file suffixes of images, in datasets and in folders given to inference (any case).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

# What `inspect_image` can find wrong with an image file; each keeps the sample out of all splits.
IMAGE_PROBLEMS = {
    "empty_file": "image file of 0 bytes",
    "unreadable_image": "image that does not decode",
    "truncated_image": "image whose data ends early",
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


def inspect_image(path: str | Path) -> tuple[str | None, int, int, int]:
    """(problem kind or None, height, width, channels) of one image file, by a full decode."""
    data = Path(path).read_bytes()
    if not data:
        return "empty_file", 0, 0, 0
    if _jpeg_or_png_truncated(data):
        return "truncated_image", 0, 0, 0
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        return "unreadable_image", 0, 0, 0
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
