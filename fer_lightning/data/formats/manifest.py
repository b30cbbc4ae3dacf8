"""A manifest: any images a user can list in a CSV file, ``data.manifest=FILE.csv``.

::

    path,expression,valence,arousal,split
    faces/0001.jpg,Happy,0.8,0.3,train
    faces/0002.jpg,6,,,test

``path`` is the image, relative to ``data.root`` (or absolute); ``expression`` an AffectNet code
(0-10, 8-10 excluded as in AffectNet) or a class name (``Happy``, ``happiness``, ``Angry``: see
fer_lightning/labels.py). ``valence``, ``arousal`` and ``split`` are optional columns: a row
without valence and arousal has none (NaN); ``split`` is ``train``, ``val`` or ``test`` (empty:
train), so with ``data.protocol=predefined`` a manifest without test or val rows has them drawn
from its training rows. See docs/data.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from fer_lightning.data.formats import NO_VA, Sample, label_problems
from fer_lightning.data.listing import csv_records, file_stamp, read_label_file
from fer_lightning.errors import ConfigError
from fer_lightning.labels import TEST_SET, TRAIN_SET, VAL_SET, code_of

COLUMNS = ("path", "expression")
# What a split column may say (any case), and names class-folder layouts use for the same parts.
SPLIT_NAMES = {
    "": TRAIN_SET,
    "train": TRAIN_SET,
    "training": TRAIN_SET,
    "val": VAL_SET,
    "valid": VAL_SET,
    "validation": VAL_SET,
    "test": TEST_SET,
    "testing": TEST_SET,
}


def expression_code(text: str) -> int | None:
    """The code a manifest's expression cell means: a whole number, or a class name."""
    text = text.strip()
    return int(text) if text.isdigit() else code_of(text)


def _number(text: str) -> float:
    """A valence or arousal cell: NaN when empty; ValueError when not a number."""
    return NO_VA if not text.strip() else float(text)


@dataclass(frozen=True)
class Manifest:
    """The reader of a manifest (see the module docstring)."""

    manifest: str = ""

    subsets: ClassVar[tuple[int, ...]] = ()
    problems: ClassVar[dict[str, str]] = {
        "unknown_label": "expression that is neither a code nor a class name",
        "unknown_split": "split other than train, val, test",
        "malformed_value": "valence or arousal that is not a number",
        "duplicate_sample": "path listed again (its first row is used)",
        "missing_image": "listed path without an image there",
    }

    def _path(self) -> Path:
        if not self.manifest:
            raise ConfigError("data=manifest needs the CSV file: add data.manifest=FILE.csv")
        return Path(self.manifest)

    def require(self, root: Path) -> None:
        if not root.is_dir():
            raise ConfigError(f"data.root={root} is not a folder: the manifest's paths start there")
        if not self._path().is_file():
            raise ConfigError(f"manifest not found at {self._path()}: check data.manifest")

    def fingerprint(self, root: Path) -> dict[str, list[int]]:
        """The manifest file's: images added to it need a new row, so a new manifest."""
        return {"manifest": file_stamp(self._path())}

    def scan(self, root: Path) -> list[Sample]:
        """One sample per row, its labels read; `read` looks for its image."""
        path = self._path()
        text = read_label_file(path, "manifest")
        samples, seen = [], set()
        for number, row in csv_records(text, path, COLUMNS):
            image = row["path"].strip()
            if os.path.isabs(image):
                image = os.path.relpath(image, root)
            image = os.path.normpath(image)
            split = row.get("split", "").strip().lower()
            subset = SPLIT_NAMES.get(split, TRAIN_SET)
            problems = [] if split in SPLIT_NAMES else ["unknown_split"]
            sample_id = image
            if image in seen:
                sample_id, image = f"{image}@row_{number}", None
                problems.append("duplicate_sample")
            seen.add(sample_id)
            code = expression_code(row["expression"])
            if code is None:
                problems.append("unknown_label")
            try:
                valence, arousal = _number(row.get("valence", "")), _number(row.get("arousal", ""))
            except ValueError:
                valence, arousal = NO_VA, NO_VA
                problems.append("malformed_value")
            if code is not None:
                problems += label_problems(code, valence, arousal)
            code = -1 if code is None else code
            samples.append(
                Sample(subset, sample_id, image, code, valence, arousal, tuple(problems))
            )
        return samples

    def read(self, root: Path, entry: Sample) -> Sample:
        """The sample, or without its image when no file or link is at its path."""
        if entry.image is None or os.path.lexists(root / entry.image):
            return entry
        return replace(entry, image=None, problems=(*entry.problems, "missing_image"))


PROTOCOL = "predefined"
READER = Manifest()
