"""AffectNet's official release: two CSV file lists with a face box per whole photograph.

::

    <root>/Manually_Annotated_file_lists/training.csv     -> train_set
    <root>/Manually_Annotated_file_lists/validation.csv   -> val_set
    <root>/Manually_Annotated_Images/<subDirectory_filePath>

Each row is ``subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,
expression,valence,arousal`` (the landmarks ``;``-separated, not used); a file may lack the header
row. Codes and V/A are as in the ``.npy`` layout. The index cuts each face out by its box once,
widened by the setting ``crop_margin`` (``data.crop_margin``), and trains on the crops
(fer_lightning/data/crops.py). A sample's id is its ``subDirectory_filePath`` without the suffix.
See docs/data.md.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import ClassVar

from fer_lightning.data.crops import BOX_PROBLEMS, require_margin
from fer_lightning.data.formats import Sample, label_problems
from fer_lightning.data.listing import file_stamp, folder_stamp, read_label_file
from fer_lightning.data.odd_files import file_problem
from fer_lightning.errors import ConfigError
from fer_lightning.labels import TRAIN_SET, VAL_SET

LISTS = "Manually_Annotated_file_lists"
IMAGES = "Manually_Annotated_Images"
LIST_FILES = {TRAIN_SET: "training.csv", VAL_SET: "validation.csv"}
COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)


@dataclass(frozen=True)
class _Entry:
    """One row of a file list, parsed in `CsvLayout.scan`; ``problem`` when it cannot be used."""

    subset: int
    sample_id: str
    image: str = ""  # relative to the dataset root
    box: tuple[int, int, int, int] | None = None
    labels: tuple[int, float, float] = (-1, 0.0, 0.0)
    problem: str | None = None


def _whole(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def _parse(subset: int, where: str, row: list[str]) -> _Entry:
    """The entry of one row; ``where`` (``<file>:<line>``) names a row that has no usable path."""
    if len(row) != len(COLUMNS):
        return _Entry(subset, where, problem="unparsable_row")
    path = PurePosixPath(row[0].strip().replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        return _Entry(subset, where, problem="path_outside_root")
    try:
        x, y, width, height = (_whole(v) for v in row[1:5])
        labels = (_whole(row[6]), float(row[7]), float(row[8]))
    except ValueError:
        return _Entry(subset, where, problem="unparsable_row")
    sample_id = str(path.with_suffix(""))
    return _Entry(subset, sample_id, f"{IMAGES}/{path}", (x, y, width, height), labels)


@dataclass(frozen=True)
class CsvLayout:
    """The reader of AffectNet's CSV release (see the module docstring)."""

    crop_margin: float = 0.0

    problems: ClassVar[dict[str, str]] = {
        "unparsable_row": "file-list row that is not 9 columns of a path and numbers (box and "
        "code whole numbers)",
        "path_outside_root": f"file-list path that is empty, absolute or leaves {IMAGES}/ (..)",
        "duplicate_row": "file-list row of an image its file lists already (the first is kept)",
        "missing_image": "file-list row whose image does not exist",
        **BOX_PROBLEMS,
    }

    def __post_init__(self) -> None:
        require_margin(self.crop_margin)
        # 0 and 0.0 are one setting, so they share one cache folder (its name hashes the settings).
        object.__setattr__(self, "crop_margin", float(self.crop_margin))

    def require(self, root: Path) -> None:
        expected = f"{LISTS}/{{{','.join(LIST_FILES.values())}}} and {IMAGES}/"
        if not (root / IMAGES).is_dir() or not (root / LISTS).is_dir():
            raise ConfigError(
                f"dataset not found at {root}: expected {expected} (AffectNet's CSV release, "
                "see docs/data.md), or run with data=synthetic"
            )
        for name in LIST_FILES.values():
            path = root / LISTS / name
            if file_problem(path) is not None or not os.access(path, os.R_OK):
                raise ConfigError(
                    f"dataset at {root} is incomplete: {LISTS}/{name} is missing or not a "
                    "readable file (expected AffectNet's CSV release, see docs/data.md)"
                )

    def fingerprint(self, root: Path) -> dict[str, list[int]]:
        """The file lists' stamps; the image folder's and each of its subfolders'."""
        result = {
            f"{LISTS}/{name}": file_stamp(root / LISTS / name) for name in LIST_FILES.values()
        }
        folders = [root / IMAGES]
        folders += sorted(Path(e.path) for e in os.scandir(root / IMAGES) if e.is_dir())
        for folder in folders:
            result[folder.relative_to(root).as_posix()] = folder_stamp(folder)
        return result

    def scan(self, root: Path) -> list[_Entry]:
        entries = []
        for subset, name in LIST_FILES.items():
            seen: set[str] = set()
            text = read_label_file(root / LISTS / name, f"AffectNet's file list {name}")
            for line, row in enumerate(csv.reader(text.splitlines()), start=1):
                if not row or (line == 1 and row[0].strip() == COLUMNS[0]):
                    continue
                entry = _parse(subset, f"{name}:{line}", row)
                if entry.problem is None and entry.sample_id in seen:
                    entry = _Entry(subset, f"{name}:{line}", problem="duplicate_row")
                seen.add(entry.sample_id)
                entries.append(entry)
        return entries

    def read(self, root: Path, entry: _Entry) -> Sample:
        if entry.problem is not None:
            return Sample(entry.subset, entry.sample_id, None, problems=(entry.problem,))
        if not os.path.lexists(root / entry.image):
            return Sample(entry.subset, entry.sample_id, None, problems=("missing_image",))
        problems = tuple(label_problems(*entry.labels))
        return Sample(
            entry.subset, entry.sample_id, entry.image, *entry.labels, problems, entry.box
        )


READER = CsvLayout()
