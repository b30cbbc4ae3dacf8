"""Annotated copies of predict's inputs: each face's box, expression name, valence and arousal.

Images keep their name and relative path under the output folder (two `face.jpg` in different
subfolders do not overwrite each other); a video becomes `<name>.avi` with Motion-JPEG, the codec
every OpenCV build can write, at the source's frame rate (with `video_stride=k` each annotated
frame is written k times, so the copy also lasts as long as the source). Boxes and label bands are
coloured by expression with the Okabe-Ito palette, whose colours stay distinct with the common
kinds of colour blindness, and every label is moved (and if need be shrunk) to stay inside the
picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.inference.predictor import Face
from fer_lightning.inference.sources import ANNOTATED_MARKER, Frame

# Okabe & Ito (2008) in BGR, one per expression code (neutral grey, then the palette's colours).
PALETTE = (
    (153, 153, 153),  # grey
    (0, 159, 230),  # orange
    (233, 180, 86),  # sky blue
    (115, 158, 0),  # bluish green
    (66, 228, 240),  # yellow
    (178, 114, 0),  # blue
    (0, 94, 213),  # vermillion
    (167, 121, 204),  # reddish purple
)
BLACK = (0, 0, 0)
WHITE = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def colour(code: int) -> tuple[int, int, int]:
    return PALETTE[code % len(PALETTE)]


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light colours, white on dark ones (luma of the BGR colour)."""
    b, g, r = background
    return BLACK if 0.299 * r + 0.587 * g + 0.114 * b > 128 else WHITE


def label_origin(
    box_xy: tuple[int, int], text: tuple[int, int], image: tuple[int, int]
) -> tuple[int, int]:
    """The top-left corner of a label band of size `text` (w, h): above the box, or inside its
    top when there is no room above, moved left or down to stay within `image` (w, h)."""
    (x, y), (w, h), (width, height) = box_xy, text, image
    top = y - h if y - h >= 0 else y
    return max(0, min(x, width - w)), max(0, min(top, height - h))


def draw_faces(image: np.ndarray, faces: Sequence[Face], class_names: Sequence[str]) -> np.ndarray:
    """A copy of a BGR image with a box and `Name v=+0.12 a=-0.34` over each face."""
    out = image.copy()
    height, width = out.shape[:2]
    base = max(0.4, min(height, width) / 800)
    thickness = max(1, round(2 * base))
    for face in faces:
        b, col = face.box, colour(face.expression)
        cv2.rectangle(out, (b.x, b.y), (b.x + b.w - 1, b.y + b.h - 1), col, thickness)
        label = f"{class_names[face.expression]} v={face.valence:+.2f} a={face.arousal:+.2f}"
        scale = base
        (text_w, text_h), baseline = cv2.getTextSize(label, FONT, scale, thickness)
        if text_w > width:  # a small picture: the label shrinks to fit its width
            scale *= width / text_w
            (text_w, text_h), baseline = cv2.getTextSize(label, FONT, scale, thickness)
        band = (text_w, text_h + baseline)
        left, top = label_origin((b.x, b.y), band, (width, height))
        cv2.rectangle(out, (left, top), (left + band[0] - 1, top + band[1] - 1), col, -1)
        origin = (left, top + text_h)
        cv2.putText(out, label, origin, FONT, scale, _text_colour(col), thickness, cv2.LINE_AA)
    return out


class Annotator:
    """Writes annotated frames under `out_dir`, mirroring each source's path below `input_path`."""

    def __init__(
        self, out_dir: str | Path, input_path: str | Path, class_names: Sequence[str]
    ) -> None:
        self.out_dir = Path(out_dir)
        root = Path(input_path).resolve()
        self.input_root = root if root.is_dir() else root.parent
        self.class_names = class_names
        self._video: tuple[str, cv2.VideoWriter] | None = None  # frames come one video at a time
        self._marked = False

    def add(self, frame: Frame, faces: Sequence[Face]) -> None:
        image = draw_faces(frame.image, faces, self.class_names)
        target = self.out_dir / Path(frame.source).resolve().relative_to(self.input_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not self._marked:  # so that a later run on a folder holding the copies leaves them out
            (self.out_dir / ANNOTATED_MARKER).touch()
            self._marked = True
        if frame.fps is None:
            cv2.imwrite(str(target), image)
            return
        if self._video is None or self._video[0] != frame.source:
            self.close()
            size = (image.shape[1], image.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*"MJPG")
            writer = cv2.VideoWriter(str(target.with_suffix(".avi")), fourcc, frame.fps, size)
            self._video = (frame.source, writer)
        for _ in range(frame.stride):
            self._video[1].write(image)

    def close(self) -> None:
        """Finishes the open video file, if any."""
        if self._video is not None:
            self._video[1].release()
            self._video = None
