"""Face boxes, OpenCV's Haar cascade (the fallback detector), and cropping faces the way
AffectNet's training images were cropped.

AffectNet's images are face boxes enlarged by a margin, made square and resized, so the network
has learnt faces that fill most of the image with some hair, chin and background around them.
Detectors return tight boxes (brows to mouth or chin), so each side of the box is pushed out by
`margin` times the box's side (0.25 by default: the crop is 1.5x the box, which shows the whole head
as AffectNet's crops do). Where the enlarged square leaves the image it is padded with black rather
than shifted or shrunk, so the face stays centred and at the scale the network expects. AffectNet's
crops are not rotated, so crops are not either unless `align=true` (for networks trained on crops
aligned by the eyes): then the crop turns about the box's centre until the eyes are level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.errors import ConfigError

CASCADE = "haarcascade_frontalface_default.xml"
CASCADE_WINDOW = 24  # the cascade's own window: smaller faces are found by enlarging the image
DEFAULT_MARGIN = 0.25  # of the box's side, added on each side


@dataclass(frozen=True)
class Box:
    """A face box in the source's pixels, with the detector's score and, from MTCNN, five
    landmarks (eyes, nose, mouth corners; left and right as seen in the image)."""

    x: int
    y: int
    w: int
    h: int
    score: float = field(default=1.0, compare=False)
    landmarks: tuple[tuple[float, float], ...] | None = field(default=None, compare=False)


def shrink_to(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image shrunk to at most `max_side` pixels a side, and the scale applied: a
    12-megapixel photo takes seconds at full size and gains nothing, faces of interest being
    far larger than any detector's window."""
    if max_side < 1:
        raise ConfigError(f"detector.max_side must be 1 pixel or more, got {max_side}")
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image, scale


class HaarDetector:
    """OpenCV's bundled frontal-face Haar cascade: no weights to install, but it misses turned
    and small faces and finds faces in clothing (docs/face-detection.md).

    The frame is searched shrunk to at most `max_side`; `min_size` is the smallest face in those
    pixels, and below the cascade's 24-px window the image is enlarged to reach it.
    """

    def __init__(
        self,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 20,
        max_side: int = 1280,
    ) -> None:
        path = Path(cv2.data.haarcascades) / CASCADE
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ConfigError(f"cannot load OpenCV's face detector {path}: reinstall opencv<5")
        if min_size < 1:
            raise ConfigError(f"detector.min_size must be 1 pixel or more, got {min_size}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_side = max_side

    def detect(self, bgr: np.ndarray) -> list[Box]:
        """Face boxes in a BGR image, left to right so rows come out in a stable order."""
        gray, scale = shrink_to(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), self.max_side)
        enlarge = max(1.0, CASCADE_WINDOW / self.min_size)
        if enlarge > 1:
            gray = cv2.resize(gray, None, fx=enlarge, fy=enlarge, interpolation=cv2.INTER_LINEAR)
        found = self._cascade.detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(round(self.min_size * enlarge),) * 2,
        )
        boxes = (Box(*(round(int(v) / scale / enlarge) for v in f)) for f in found)
        return sorted(boxes, key=lambda b: (b.x, b.y))


def whole_image_box(image: np.ndarray) -> Box:
    """The box of an image that is already a face crop (`detect_faces=false`)."""
    return Box(0, 0, image.shape[1], image.shape[0])


def padded_region(image: np.ndarray, left: int, top: int, width: int, height: int) -> np.ndarray:
    """image[top:top+height, left:left+width], with black where that leaves the image."""
    rows, cols = image.shape[:2]
    pad = (max(0, -top), max(0, top + height - rows), max(0, -left), max(0, left + width - cols))
    inside = image[max(0, top) : max(0, top + height), max(0, left) : max(0, left + width)]
    if inside.size == 0:
        return np.zeros((height, width, *image.shape[2:]), image.dtype)
    return cv2.copyMakeBorder(inside, *pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def eye_angle(box: Box) -> float:
    """The angle in degrees of the line from the left to the right eye (0: level); 0 without
    landmarks."""
    if not box.landmarks:
        return 0.0
    (lx, ly), (rx, ry) = box.landmarks[:2]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def crop_face(
    bgr: np.ndarray, box: Box, size: int, margin: float = DEFAULT_MARGIN, align: bool = False
) -> np.ndarray:
    """The square RGB crop [size, size, 3] uint8 around `box`, as the training images were cut;
    with `align`, turned so that the eyes are level (needs the box's landmarks).

    Converts BGR to RGB: the network was normalised with ImageNet's RGB statistics, and feeding it
    OpenCV's BGR was one of the original project's bugs.
    """
    side = round(max(box.w, box.h) * (1 + 2 * margin))
    angle = eye_angle(box) if align else 0.0
    if angle:
        centre = (box.x + box.w / 2, box.y + box.h / 2)
        matrix = cv2.getRotationMatrix2D(centre, angle, size / side)
        matrix[:, 2] += (size / 2 - centre[0], size / 2 - centre[1])
        resized = cv2.warpAffine(bgr, matrix, (size, size), flags=cv2.INTER_LINEAR)
        return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    left = round(box.x + box.w / 2 - side / 2)
    top = round(box.y + box.h / 2 - side / 2)
    square = padded_region(bgr, left, top, side, side)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    resized = cv2.resize(square, (size, size), interpolation=interpolation)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
