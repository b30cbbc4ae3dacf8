"""Dataset layouts on disk, one file each, all read into the same per-sample records.

The index (fer_lightning/data/index.py) knows no layout: it asks a `Reader` for the samples, checks
their images, and keeps the usable ones. Supporting another layout (AffectNet's CSV release,
RAF-DB, FER2013, a manifest, class folders) is one new module ``formats/<name>.py`` that defines
``READER``, an object with these members (see `Reader`):

``problems``
    ``{kind: description}`` of every problem the reader can report; each excludes the sample.
``require(root)``
    Raises a one-line ConfigError unless ``root`` holds this layout.
``fingerprint(root)``
    Cheap facts about ``root`` (directory mtimes and entry counts, a file's size and mtime) that
    change when samples are added, removed or renamed, so a cached index is known to be stale.
``scan(root)``
    One picklable entry per sample, and per stray file to report, found by listing ``root``. It
    runs in the main process and should not open files per sample.
``read(root, entry)``
    The `Sample` of one entry: its labels read and checked (`label_problems` checks AffectNet's
    codes and ranges). It runs in a process pool, so the per-sample file reads of a large dataset
    are spread over the cores; a layout whose labels come from one file reads it in ``scan`` and
    returns finished samples from ``read``.

A layout of whole photographs gives each sample its face ``box``; the index then cuts the face out
once and indexes the crop instead, and the reader's ``problems`` include `BOX_PROBLEMS` (both in
fer_lightning/data/crops.py).

A reader maps its labels to AffectNet's codes (fer_lightning/labels.py). `reader(name)` finds the
module by its name. See docs/data.md.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fer_lightning.errors import ConfigError
from fer_lightning.labels import EXPRESSION_NAMES, NON_EXPRESSION_CODES, NOT_ANNOTATED


@dataclass(frozen=True)
class Sample:
    """One sample as its layout describes it, before its image is checked."""

    subset: int  # position in fer_lightning.labels.SUBSETS
    sample_id: str  # unique within its subset
    image: str | None  # image file, relative to the dataset root; None when there is none
    expression: int = -1  # AffectNet code
    valence: float = 0.0
    arousal: float = 0.0
    problems: tuple[str, ...] = ()  # kinds of the reader's `problems` or of LABEL_PROBLEMS
    # The face as (x, y, width, height) in pixels of ``image``, for layouts of whole photographs:
    # the index cuts it out once (fer_lightning/data/crops.py). None: the image is the face.
    box: tuple[int, int, int, int] | None = None


class Reader(Protocol):
    """One on-disk layout; see the module docstring."""

    problems: Mapping[str, str]

    def require(self, root: Path) -> None: ...

    def fingerprint(self, root: Path) -> dict[str, Any]: ...

    def scan(self, root: Path) -> Sequence[Hashable]: ...

    def read(self, root: Path, entry: Any) -> Sample: ...


def _code_kind(code: int) -> str:
    return f"code_{code}_{NON_EXPRESSION_CODES[code].lower().replace('-', '_')}"


# What `label_problems` reports; every kind keeps the sample out of all splits.
LABEL_PROBLEMS = {
    **{_code_kind(c): f"expression {c} ({name})" for c, name in NON_EXPRESSION_CODES.items()},
    "unknown_code": f"expression code outside 0-{max(NON_EXPRESSION_CODES)}",
    "va_not_annotated": f"valence or arousal {NOT_ANNOTATED:g} (not annotated)",
    "va_out_of_range": "valence or arousal outside [-1, 1]",
}


def label_problems(expression: int, valence: float, arousal: float) -> list[str]:
    """What is wrong with a sample's AffectNet labels: no expression, or no usable V/A."""
    problems = []
    if expression in NON_EXPRESSION_CODES:
        problems.append(_code_kind(expression))
    elif not 0 <= expression < len(EXPRESSION_NAMES):
        problems.append("unknown_code")
    if NOT_ANNOTATED in (valence, arousal):
        problems.append("va_not_annotated")
    elif not (-1.0 <= valence <= 1.0 and -1.0 <= arousal <= 1.0):  # also catches NaN
        problems.append("va_out_of_range")
    return problems


# The layout read unless told otherwise.
DEFAULT_LAYOUT = "affectnet"


def names() -> list[str]:
    """The layouts there are a reader for."""
    return sorted(module.name for module in pkgutil.iter_modules(__path__))


def reader(name: str) -> Reader:
    """The reader of the layout ``name`` (the module ``formats/<name>.py``)."""
    if name not in names():
        raise ConfigError(f"unknown dataset format {name!r}: choose {', '.join(names())}")
    return importlib.import_module(f"{__name__}.{name}").READER
