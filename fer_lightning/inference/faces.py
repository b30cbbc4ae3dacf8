"""Finding faces in a frame and cropping them the way AffectNet's training images were cropped.

AffectNet's images are face boxes enlarged by a margin, made square and resized, so the network
has learnt faces that fill most of the image with some hair, chin and background around them.
OpenCV's Haar cascade returns tight boxes (brows to mouth), so each side of the box is pushed out by
`margin` times the box's side (0.25 by default: the crop is 1.5x the box, which shows the whole head
as AffectNet's crops do). Where the enlarged square leaves the image it is padded with black rather
than shifted or shrunk, so the face stays centred and at the scale the network expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.errors import ConfigError

CASCADE = "haarcascade_frontalface_default.xml"
DEFAULT_MARGIN = 0.25  # of the box's side, added on each side


@dataclass(frozen=True)
class Box:
    """A face box in the source's pixels."""

    x: int
    y: int
    w: int
    h: int


class FaceDetector:
    """OpenCV's bundled frontal-face Haar cascade: fast on CPU and needs no downloaded weights.

    Images larger than `max_side` are searched at that size (boxes are scaled back): a 12-megapixel
    photo takes seconds at full size and gains nothing, since faces of interest are far larger than
    the cascade's 24-pixel window. `min_size` is in the pixels searched.
    """

    def __init__(
        self,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 30,
        max_side: int = 1280,
    ) -> None:
        path = Path(cv2.data.haarcascades) / CASCADE
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ConfigError(f"cannot load OpenCV's face detector {path}: reinstall opencv<5")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_side = max_side

    def detect(self, bgr: np.ndarray) -> list[Box]:
        """Face boxes in a BGR image, left to right so rows come out in a stable order."""
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, self.max_side / max(gray.shape))
        if scale < 1:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = self._cascade.detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        boxes = (Box(*(round(int(v) / scale) for v in f)) for f in found)
        return sorted(boxes, key=lambda b: (b.x, b.y))


def whole_image_box(image: np.ndarray) -> Box:
    """The box of an image that is already a face crop (`detect_faces=false`)."""
    return Box(0, 0, image.shape[1], image.shape[0])


def crop_face(bgr: np.ndarray, box: Box, size: int, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The square RGB crop [size, size, 3] uint8 around `box`, as the training images were cut.

    Converts BGR to RGB: the network was normalised with ImageNet's RGB statistics, and feeding it
    OpenCV's BGR was one of the original project's bugs.
    """
    side = round(max(box.w, box.h) * (1 + 2 * margin))
    left = round(box.x + box.w / 2 - side / 2)
    top = round(box.y + box.h / 2 - side / 2)
    height, width = bgr.shape[:2]
    pad = (max(0, -top), max(0, top + side - height), max(0, -left), max(0, left + side - width))
    inside = bgr[max(0, top) : top + side, max(0, left) : left + side]
    square = cv2.copyMakeBorder(inside, *pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    resized = cv2.resize(square, (size, size), interpolation=interpolation)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
