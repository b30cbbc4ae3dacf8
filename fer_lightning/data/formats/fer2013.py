"""FER2013: one CSV of 48x48 grayscale faces as pixel values, its labels, or FERPlus's votes.

::

    <root>/fer2013.csv      emotion,pixels,Usage   (2,304 space-separated values 0-255 per row)
    <root>/fer2013new.csv   Usage,Image name,neutral,...,contempt,unknown,NF   (data.labels=ferplus)

``Usage`` is the part: Training trains, PublicTest validates, PrivateTest tests. With
``data.labels=fer2013`` (the default) ``emotion`` is the label (0 Angry, 1 Disgust, 2 Fear,
3 Happy, 4 Sad, 5 Surprise, 6 Neutral); with ``data.labels=ferplus`` it is the majority of
FERPlus's ten votes per row (rows in fer2013.csv's order), as FERPlus's own code takes it: single
votes are dropped, then the class with more than half the remaining votes wins; a row whose winner
is ``unknown`` or ``NF`` (not a face), or that has no such class, is excluded and counted.
FER2013 has no valence or arousal labels (NaN).

The faces are not image files, so `Fer2013.store` writes each as a PNG file into the dataset's
cache once (``<cache>/images/<subset>/<row>.png``, about 2 KB each, a few seconds for the 35,887
rows), and the loaders read them as any layout's images. See docs/data.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from fer_lightning.data.formats import Sample, ScannedLayout
from fer_lightning.data.listing import csv_records, file_stamp, read_label_file
from fer_lightning.errors import ConfigError
from fer_lightning.files import write_text_atomic
from fer_lightning.labels import SUBSETS, TEST_SET, TRAIN_SET, VAL_SET, class_codes

# FER2013's labels 0-6, in order.
CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
CODES = class_codes(CLASSES)
# FERPlus's vote columns: eight expressions, then the two that are none.
FERPLUS_CLASSES = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)
FERPLUS_CODES = class_codes(FERPLUS_CLASSES)
FERPLUS_VOTES = (*FERPLUS_CLASSES, "unknown", "NF")
LABEL_SOURCES = ("fer2013", "ferplus")
CSV_FILE, FERPLUS_FILE = "fer2013.csv", "fer2013new.csv"
USAGES = {"Training": TRAIN_SET, "PublicTest": VAL_SET, "PrivateTest": TEST_SET}
SIDE = 48
STORE_MARKER = "stored.json"


def pixels_of(text: str) -> np.ndarray | None:
    """A row's face as uint8 [48, 48], None unless it is 2,304 whole numbers 0-255 (numpy parses
    the text in C, 6x faster than splitting it; anything but whole numbers raises there)."""
    try:
        values = np.fromstring(text, dtype=np.int64, sep=" ")
    except ValueError:
        return None
    if values.size != SIDE * SIDE or values.min() < 0 or values.max() > 255:
        return None
    return values.astype(np.uint8).reshape(SIDE, SIDE)


def ferplus_code(votes: list[str]) -> tuple[int, str | None]:
    """(canonical code or -1, problem kind or None) of a row's ten FERPlus vote counts."""
    try:
        counts = np.array([float(v) for v in votes])
    except ValueError:
        return -1, "malformed_row"
    if len(counts) != len(FERPLUS_VOTES) or not np.isfinite(counts).all():
        return -1, "malformed_row"
    counts[counts <= 1] = 0  # FERPlus drops an emotion with a single vote as an outlier
    winner = int(np.argmax(counts))
    if counts[winner] <= counts.sum() / 2:
        return -1, "ferplus_no_majority"
    if winner >= len(FERPLUS_CLASSES):
        return -1, "ferplus_unknown" if FERPLUS_VOTES[winner] == "unknown" else "ferplus_not_a_face"
    return FERPLUS_CODES[winner], None


@dataclass(frozen=True)
class Fer2013(ScannedLayout):
    """The reader of FER2013's layout (see the module docstring)."""

    labels: str = "fer2013"

    subsets: ClassVar[tuple[int, ...]] = (TRAIN_SET, VAL_SET, TEST_SET)
    problems: ClassVar[dict[str, str]] = {
        "malformed_row": "row whose label or votes are not numbers",
        "unknown_label": "emotion other than 0-6",
        "unknown_usage": "Usage other than Training, PublicTest, PrivateTest",
        "unreadable_pixels": "pixels that are not 2,304 whole numbers 0-255",
        "ferplus_unknown": "FERPlus's majority vote is unknown",
        "ferplus_not_a_face": "FERPlus's majority vote is NF (not a face)",
        "ferplus_no_majority": "no FERPlus class has more than half the votes",
    }

    def _files(self) -> tuple[str, ...]:
        if self.labels not in LABEL_SOURCES:
            raise ConfigError(
                f"data.labels must be {' or '.join(LABEL_SOURCES)} for FER2013, got {self.labels!r}"
            )
        return (CSV_FILE, FERPLUS_FILE) if self.labels == "ferplus" else (CSV_FILE,)

    def require(self, root: Path) -> None:
        for name in self._files():
            if not (root / name).is_file():
                raise ConfigError(
                    f"{name} not found in {root} (expected FER2013's layout"
                    f"{', with FERPlus' if name == FERPLUS_FILE else ''}; see docs/data.md)"
                )

    def fingerprint(self, root: Path) -> dict[str, list[int]]:
        return {name: file_stamp(root / name) for name in self._files()}

    def _rows(self, root: Path) -> Iterator[tuple[int, dict[str, str]]]:
        text = read_label_file(root / CSV_FILE, "FER2013's CSV")
        return csv_records(text, root / CSV_FILE, ("emotion", "pixels", "Usage"))

    def _votes(self, root: Path, rows: int) -> list[list[str]] | None:
        """FERPlus's ten vote counts per row of fer2013.csv; None with data.labels=fer2013."""
        if self.labels != "ferplus":
            return None
        text = read_label_file(root / FERPLUS_FILE, "FERPlus's CSV")
        votes = [
            [row[name] for name in FERPLUS_VOTES]
            for _, row in csv_records(text, root / FERPLUS_FILE, FERPLUS_VOTES)
        ]
        if len(votes) != rows:
            raise ConfigError(
                f"{root / FERPLUS_FILE} has {len(votes)} rows and {root / CSV_FILE} {rows}: "
                "FERPlus's rows must be FER2013's, in the same order"
            )
        return votes

    def store(self, root: Path, cache: Path) -> Path:
        """Writes every row's face as ``<cache>/images/<subset>/<row>.png`` unless the files for
        this fer2013.csv are there; returns ``<cache>/images``."""
        folder = cache / "images"
        stamp = {"csv": file_stamp(root / CSV_FILE)}
        if _read_marker(folder / STORE_MARKER) == stamp:
            return folder
        for name in SUBSETS:
            (folder / name).mkdir(parents=True, exist_ok=True)
        for number, row in self._rows(root):
            face = pixels_of(row["pixels"])
            if face is not None:
                subset = SUBSETS[USAGES.get(row["Usage"].strip(), TRAIN_SET)]
                path = folder / subset / f"{number:05d}.png"
                if not cv2.imwrite(str(path), face):
                    raise ConfigError(f"cannot write {path}: free space, or set data.cache_dir")
        write_text_atomic(folder / STORE_MARKER, json.dumps(stamp) + "\n")
        return folder

    def scan(self, root: Path) -> list[Sample]:
        """Every sample, finished: the labels are all in the CSV files."""
        rows = list(self._rows(root))
        votes = self._votes(root, len(rows))
        samples = []
        for number, row in rows:
            sample_id = f"{number:05d}"
            usage = row["Usage"].strip()
            subset = USAGES.get(usage, TRAIN_SET)
            problems = [] if usage in USAGES else ["unknown_usage"]
            if votes is None:
                code, problem = _fer2013_code(row["emotion"])
            else:
                code, problem = ferplus_code(votes[number - 1])
            problems += [problem] if problem else []
            image = f"{SUBSETS[subset]}/{sample_id}.png"
            if pixels_of(row["pixels"]) is None:
                image = None
                problems.append("unreadable_pixels")
            samples.append(Sample(subset, sample_id, image, code, problems=tuple(problems)))
        return samples


def _read_marker(path: Path) -> dict | None:
    """What the store's marker says it holds; None when there is none or it is damaged."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _fer2013_code(emotion: str) -> tuple[int, str | None]:
    emotion = emotion.strip()
    if not emotion.lstrip("-").isdigit():
        return -1, "malformed_row"
    label = int(emotion)
    return (CODES[label], None) if 0 <= label < len(CODES) else (-1, "unknown_label")


PROTOCOL = "predefined"
READER = Fer2013()
