"""Annotated copies of predict's inputs: each face's box, expression name, valence and arousal.

Images keep their name and relative path under the output folder (two `face.jpg` in different
subfolders do not overwrite each other); a video becomes `<name>.avi` with Motion-JPEG, the codec
every OpenCV build can write, at the rate its frames were sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.inference.predictor import Face
from fer_lightning.inference.sources import ANNOTATED_MARKER, Frame

GREEN = (0, 200, 0)
BLACK = (0, 0, 0)
WHITE = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_faces(image: np.ndarray, faces: Sequence[Face], class_names: Sequence[str]) -> np.ndarray:
    """A copy of a BGR image with a box and `Name v=+0.12 a=-0.34` over each face."""
    out = image.copy()
    scale = max(0.4, min(out.shape[:2]) / 800)
    thickness = max(1, round(2 * scale))
    for face in faces:
        b = face.box
        cv2.rectangle(out, (b.x, b.y), (b.x + b.w, b.y + b.h), GREEN, thickness)
        label = f"{class_names[face.expression]} v={face.valence:+.2f} a={face.arousal:+.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(label, FONT, scale, thickness)
        # Light text on a dark band stays legible over any background.
        bottom = max(text_h + baseline, b.y)
        cv2.rectangle(out, (b.x, bottom - text_h - baseline), (b.x + text_w, bottom), BLACK, -1)
        cv2.putText(out, label, (b.x, bottom - baseline), FONT, scale, WHITE, thickness)
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
        self._video[1].write(image)

    def close(self) -> None:
        """Finishes the open video file, if any."""
        if self._video is not None:
            self._video[1].release()
            self._video = None
