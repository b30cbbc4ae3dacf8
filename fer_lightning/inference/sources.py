"""Turning predict's `input` (an image, a folder of images, or a video) into frames.

Files that cannot be used are yielded as `Skipped` with a kind instead of raising, so one corrupt
file, FIFO or broken link in a folder of thousands is counted, never the end (or a hang) of the
run. Only regular files are opened (fer_lightning/data/odd_files.py), and an image whose header
claims too many pixels is not decoded. The project's own outputs found in the folder are left out:
the configured `output` and `annotated_dir`, folders of annotated copies (they hold
`ANNOTATED_MARKER`) and run directories (they hold `.hydra/`), so a rerun never predicts on them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.data.decode import IMAGE_PROBLEMS, IMAGE_SUFFIXES, decode_bytes, read_image_file
from fer_lightning.data.odd_files import FILE_PROBLEMS, file_problem
from fer_lightning.errors import ConfigError

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv"})
# Written into every folder of annotated copies, so that a later run on a folder holding it leaves
# the copies out.
ANNOTATED_MARKER = ".fer_lightning-annotated"

# The kinds of `Skipped`, with what each means (the summary's lines).
SKIP_KINDS = {
    "unsupported": "not an image or video suffix",
    "unreadable": "image or video that does not decode",
    **FILE_PROBLEMS,
    **{kind: IMAGE_PROBLEMS[kind] for kind in ("empty_file", "too_many_pixels")},
    "unlistable_folder": "folder that cannot be listed (permissions)",
}


@dataclass(frozen=True)
class Frame:
    """One BGR image to look for faces in; `index` is the video frame number (0 for a photo)."""

    source: str
    index: int
    image: np.ndarray | None
    fps: float | None = None  # the video's own frame rate; None for a photo
    stride: int = 1  # frames of the video this one stands for (`video_stride`)


@dataclass(frozen=True)
class Skipped:
    """A file that gave no frames, and why (a kind of `SKIP_KINDS`)."""

    source: str
    reason: str


def input_files(
    input_path: str | Path, exclude: Iterable[str | Path | None] = ()
) -> list[Path | Skipped]:
    """The files `input` names: itself, or every file below a folder in sorted order, with the
    entries that cannot be files to read (a FIFO, a broken link, ...) as `Skipped`.

    Hidden files and folders (`.DS_Store`, `.ipynb_checkpoints/`) are left out: they are never
    the user's images, and reporting them as unsupported would only be noise. So are the paths in
    `exclude` (predict's outputs) and the project's outputs of earlier runs (see the docstring).
    """
    path = Path(input_path)
    if path.is_dir():
        excluded = {Path(p).resolve() for p in exclude if p is not None}
        return list(_walk(path, excluded - {path.resolve()}, set()))
    kind = file_problem(path)
    if kind is None:
        return [path]
    if kind == "not_a_regular_file":
        raise ConfigError(
            f"input {path} is not a file or folder: pass input=PATH to an image, folder or video"
        )
    if kind != "unreadable_file" and path.is_symlink():
        raise ConfigError(
            f"input {path} is a symbolic link to nothing: pass input=PATH to an "
            "image, folder or video"
        )
    raise ConfigError(f"input {path} does not exist: pass input=PATH to an image, folder or video")


def _walk(
    folder: Path, excluded: set[Path], seen: set[tuple[int, int]]
) -> Iterator[Path | Skipped]:
    """The entries below ``folder``; ``seen`` holds the folders entered, so a link loop ends."""
    info = folder.stat()
    seen.add((info.st_dev, info.st_ino))
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        yield Skipped(str(folder), "unlistable_folder")
        return
    for name in names:
        path = folder / name
        if name.startswith("."):
            continue
        kind = file_problem(path)
        if kind not in (None, "not_a_regular_file"):
            yield Skipped(str(path), kind)
        elif path.resolve() in excluded:
            continue
        elif kind is None:
            yield path
        elif not path.is_dir():
            yield Skipped(str(path), kind)
        elif path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
            yield Skipped(str(path), kind)  # a folder named like an image: not looked into
        elif _is_own_output(path):
            continue
        elif (path.stat().st_dev, path.stat().st_ino) in seen:
            yield Skipped(str(path), "link_loop")
        else:
            yield from _walk(path, excluded, seen)


def _is_own_output(folder: Path) -> bool:
    return (folder / ANNOTATED_MARKER).is_file() or (folder / ".hydra").is_dir()


def read_frames(
    files: Sequence[Path | Skipped], video_stride: int = 1
) -> Iterator[Frame | Skipped]:
    """Frames of each file in order: one per image, every `video_stride`-th of a video."""
    if video_stride < 1:
        raise ConfigError(f"video_stride must be 1 or more, got {video_stride}")
    for path in files:
        if isinstance(path, Skipped):
            yield path
            continue
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            yield _read_image(path)
        elif suffix in VIDEO_SUFFIXES:
            yield from _read_video(path, video_stride)
        else:
            yield Skipped(str(path), "unsupported")


def _read_image(path: Path) -> Frame | Skipped:
    kind, data = read_image_file(path)
    image = None if kind else decode_bytes(data, cv2.IMREAD_COLOR)
    if image is None:
        return Skipped(str(path), kind or "unreadable")
    return Frame(str(path), 0, image)


def _read_video(path: Path, stride: int) -> Iterator[Frame | Skipped]:
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            yield Skipped(str(path), "unreadable")
            return
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
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
                    yield Frame(str(path), index, image, fps, stride)
            index += 1
        if not any_frame:
            yield Skipped(str(path), "unreadable")
    finally:
        capture.release()
