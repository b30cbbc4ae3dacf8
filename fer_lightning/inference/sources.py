"""Turning predict's `input` (an image, a folder of images, or a video) into frames.

Files that cannot be used are yielded as `Skipped` with a reason instead of raising, so one corrupt
file in a folder of thousands is reported and counted, never the end of the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.data.decode import IMAGE_SUFFIXES
from fer_lightning.errors import ConfigError

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv"})


@dataclass(frozen=True)
class Frame:
    """One BGR image to look for faces in; `index` is the video frame number (0 for a photo)."""

    source: str
    index: int
    image: np.ndarray | None
    fps: float | None = None  # the rate the frames are sampled at, for videos


@dataclass(frozen=True)
class Skipped:
    """A file that gave no frames, and why (`unreadable` or `unsupported`)."""

    source: str
    reason: str


def input_files(input_path: str | Path) -> list[Path]:
    """The files `input` names: itself, or every file below a folder in sorted order.

    Hidden files and folders (`.DS_Store`, `.ipynb_checkpoints/`) are left out: they are never
    the user's images, and reporting them as unsupported would only be noise.
    """
    path = Path(input_path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    raise ConfigError(f"input {path} does not exist: pass input=PATH to an image, folder or video")


def read_frames(files: list[Path], video_stride: int = 1) -> Iterator[Frame | Skipped]:
    """Frames of each file in order: one per image, every `video_stride`-th of a video."""
    if video_stride < 1:
        raise ConfigError(f"video_stride must be 1 or more, got {video_stride}")
    for path in files:
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            yield _read_image(path)
        elif suffix in VIDEO_SUFFIXES:
            yield from _read_video(path, video_stride)
        else:
            yield Skipped(str(path), "unsupported")


def _read_image(path: Path) -> Frame | Skipped:
    # imdecode instead of imread: it reads non-ASCII paths on every platform.
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        return Skipped(str(path), "unreadable")
    return Frame(str(path), 0, image)


def _read_video(path: Path, stride: int) -> Iterator[Frame | Skipped]:
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            yield Skipped(str(path), "unreadable")
            return
        fps = (capture.get(cv2.CAP_PROP_FPS) or 25.0) / stride
        index = 0
        any_frame = False
        while True:
            # grab() skips decoding the frames the stride leaves out.
            if not capture.grab():
                break
            if index % stride == 0:
                ok, image = capture.retrieve()
                if ok:
                    any_frame = True
                    yield Frame(str(path), index, image, fps)
            index += 1
        if not any_frame:
            yield Skipped(str(path), "unreadable")
    finally:
        capture.release()
