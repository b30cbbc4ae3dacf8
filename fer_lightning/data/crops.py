"""Faces cut out of whole photographs by their boxes, once, while indexing, and cached as files.

A layout that ships photographs with a face box per sample (AffectNet's CSV release) gives the
index samples with a ``box``. The index cuts each face out here, writes it into the cache, and
indexes the crop in place of the photograph, so training decodes a face-sized file as it does for
AffectNet's ``.npy`` layout. Decoding the photograph and cropping it for every sample instead
took 2.6-6.7x as long per sample (bench/bench_crops.py, bench/README.md).

A crop keeps its source's kind of compression: a JPEG's face is re-encoded as a JPEG of quality
`JPEG_QUALITY`, anything else is written losslessly as PNG (its pixels are the box's exactly).
See docs/data.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.data.decode import decode_checked
from fer_lightning.data.formats import Sample
from fer_lightning.errors import ConfigError
from fer_lightning.files import atomic_write
from fer_lightning.labels import SUBSETS
from fer_lightning.values import is_number

# Each keeps the sample out of all splits.
BOX_PROBLEMS = {
    "empty_box": "face box of zero or negative width or height",
    "box_outside_image": "face box reaching outside its image",
}
# The crop of a JPEG photograph is a second generation: on the smooth photograph of
# tests/test_data_crops.py it differs from the photograph's pixels by 1.75 of 255 on average.
# At 95 the crops of bench/bench_crops.py were twice the size of the .npy layout's faces and
# decoded 0.76x as fast; at 90, 1.3x the size and 0.9x as fast (bench/README.md).
JPEG_QUALITY = 90
CROPS_DIR = "crops"


def box_problem(box: tuple[int, int, int, int], height: int, width: int) -> str | None:
    """The kind of `BOX_PROBLEMS` a face box has in an image of ``height`` x ``width``, or None."""
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return "empty_box"
    if x < 0 or y < 0 or x + w > width or y + h > height:
        return "box_outside_image"
    return None


def crop_box(
    box: tuple[int, int, int, int], margin: float, height: int, width: int
) -> tuple[slice, slice]:
    """The rows and columns of a face box widened by ``margin`` (a fraction of the box's width on
    the left and on the right, of its height above and below), clipped to the image."""
    x, y, w, h = box
    dx, dy = round(margin * w), round(margin * h)
    return slice(max(0, y - dy), min(height, y + h + dy)), slice(
        max(0, x - dx), min(width, x + w + dx)
    )


def _encode(face: np.ndarray, jpeg: bool) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if jpeg else []
    ok, data = cv2.imencode(".jpg" if jpeg else ".png", np.ascontiguousarray(face), params)
    if not ok:
        raise RuntimeError("encoding a face crop failed")
    return data.tobytes()


def require_margin(margin: object) -> None:
    """Raises a one-line ConfigError unless ``margin`` is a ``data.crop_margin``: 0 to 1."""
    if not (is_number(margin) and 0 <= margin <= 1):
        raise ConfigError(f"data.crop_margin must be between 0 and 1, got {margin!r}")


@dataclass(frozen=True)
class Cropper:
    """Cuts samples' faces into ``directory`` (``<cache>/crops``), widened by ``margin``."""

    directory: Path
    margin: float = 0.0

    def __post_init__(self) -> None:
        require_margin(self.margin)

    def cut(self, root: Path, sample: Sample) -> Sample:  # sample has an image and a box
        """``sample`` with its image replaced by its face crop (relative to ``root`` when the crop
        lies under it, else absolute), or without an image and with the problem that prevented it
        (the photograph's kind of IMAGE_PROBLEMS or FILE_PROBLEMS, or a box problem)."""
        kind, image = decode_checked(root / sample.image)
        if image is not None:
            kind = box_problem(sample.box, *image.shape[:2])
        if kind is not None:
            return replace(sample, image=None, box=None, problems=(*sample.problems, kind))
        rows, columns = crop_box(sample.box, self.margin, *image.shape[:2])
        jpeg = Path(sample.image).suffix.lower() in (".jpg", ".jpeg")
        target = (
            self.directory
            / SUBSETS[sample.subset]
            / (sample.sample_id + (".jpg" if jpeg else ".png"))
        )
        with atomic_write(target, durable=False) as file:  # the index syncs them all at once
            file.write(_encode(image[rows, columns], jpeg))
        try:
            stored = str(target.relative_to(root))
        except ValueError:
            stored = os.path.abspath(target)
        return replace(sample, image=stored, box=None)
