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
    are spread over the cores; a layout whose labels come from one file (or its folder names)
    reads them in ``scan``, which then returns finished samples that `ScannedLayout`'s ``read``
    hands back.

Two members are optional:

``subsets``
    The positions in fer_lightning.labels.SUBSETS the layout always has (each must end up with a
    usable sample); AffectNet's two when absent. A layout whose parts depend on its files
    (a manifest, class folders) declares none.
``store(root, cache)``
    For a layout whose images are not files (FER2013's rows of pixel values): writes them once as
    image files under the cache directory ``cache`` and returns that folder, which ``Sample.image``
    paths are then relative to instead of ``root``. It runs before every ``scan`` and on every
    load of a cached index, so it should return at once when its files are already there.

A layout of whole photographs gives each sample its face ``box``; the index then cuts the face out
once, widened by the reader's ``crop_margin`` setting, and indexes the crop instead; the reader's
``problems`` include `BOX_PROBLEMS` (both in fer_lightning/data/crops.py).

A reader declares its classes by name and maps them to AffectNet's codes with
`fer_lightning.labels.class_codes`. Two module constants give the data config's defaults for the
layout (`layout_classes`, `layout_protocol`): ``CLASSES``, the class names of a dataset that labels
fewer than AffectNet's eight, and ``PROTOCOL = "predefined"`` for a layout whose samples each
carry their part (train, val or test). A sample without valence and arousal labels carries NaN for
both (`NO_VA`), all the way into the batches. `reader(name, **options)` finds the module by its
name; a reader that takes options (``data.labels``, ``data.images``, ``data.manifest``,
``data.crop_margin``) is a frozen dataclass whose fields they are. Every module here is a layout
(`names` lists them); what readers share lives in fer_lightning/data/listing.py. See docs/data.md.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fer_lightning.errors import ConfigError
from fer_lightning.labels import (
    EXPRESSION_NAMES,
    NON_EXPRESSION_CODES,
    NOT_ANNOTATED,
    TRAIN_SET,
    VAL_SET,
)

# Valence and arousal of a sample whose dataset has none: the V/A losses and metrics leave it out.
NO_VA = math.nan


@dataclass(frozen=True)
class Sample:
    """One sample as its layout describes it, before its image is checked."""

    subset: int  # position in fer_lightning.labels.SUBSETS
    sample_id: str  # unique within its subset
    image: str | None  # image file, relative to the dataset root; None when there is none
    expression: int = -1  # AffectNet code
    valence: float = NO_VA
    arousal: float = NO_VA
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


class ScannedLayout:
    """A layout whose labels are all in one file or in its folder names: ``scan`` reads them and
    returns finished samples, which ``read`` hands back as they are."""

    def read(self, root: Path, entry: Sample) -> Sample:
        return entry


def _code_kind(code: int) -> str:
    return f"code_{code}_{NON_EXPRESSION_CODES[code].lower().replace('-', '_')}"


# What `label_problems` reports; every kind keeps the sample out of all splits.
LABEL_PROBLEMS = {
    **{_code_kind(c): f"expression {c} ({name})" for c, name in NON_EXPRESSION_CODES.items()},
    "unknown_code": f"expression code outside 0-{max(NON_EXPRESSION_CODES)}",
    "va_not_annotated": f"valence or arousal {NOT_ANNOTATED:g} (not annotated)",
    "va_out_of_range": "valence or arousal outside [-1, 1]",
    "va_partial": "valence without arousal, or arousal without valence",
}


def label_problems(expression: int, valence: float, arousal: float) -> list[str]:
    """What is wrong with a sample's labels in AffectNet's codes: no expression, or unusable V/A.

    Valence and arousal both `NO_VA` (NaN) is no problem: the sample has no V/A labels. A reader
    that must have them (AffectNet's) rejects NaN before calling this.
    """
    problems = []
    if expression in NON_EXPRESSION_CODES:
        problems.append(_code_kind(expression))
    elif not 0 <= expression < len(EXPRESSION_NAMES):
        problems.append("unknown_code")
    if math.isnan(valence) and math.isnan(arousal):
        pass
    elif math.isnan(valence) or math.isnan(arousal):
        problems.append("va_partial")
    elif NOT_ANNOTATED in (valence, arousal):
        problems.append("va_not_annotated")
    elif not (-1.0 <= valence <= 1.0 and -1.0 <= arousal <= 1.0):  # also catches NaN
        problems.append("va_out_of_range")
    return problems


# The layout read unless told otherwise.
DEFAULT_LAYOUT = "affectnet"
# The data config keys (``data.<key>``) that are settings of some readers.
READER_SETTINGS = ("labels", "images", "manifest", "crop_margin")


def names() -> list[str]:
    """The layouts there are a reader for."""
    return sorted(module.name for module in pkgutil.iter_modules(__path__))


def _layout(name: str) -> Any:
    """The module of the layout ``name``."""
    if name not in names():
        raise ConfigError(f"unknown dataset format {name!r}: choose {', '.join(names())}")
    return importlib.import_module(f"{__name__}.{name}")


def reader(name: str, **options: Any) -> Reader:
    """The reader of the layout ``name`` (the module ``formats/<name>.py``), with ``options``
    (``data.<option>`` settings) replacing its defaults."""
    source = _layout(name).READER
    if not options:
        return source
    fields = (
        {f.name for f in dataclasses.fields(source)} if dataclasses.is_dataclass(source) else ()
    )
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ConfigError(
            f"data.{unknown[0]} is not a setting of data.format={name}: remove it "
            f"({name} takes {', '.join(f'data.{f}' for f in sorted(fields)) or 'no settings'})"
        )
    return dataclasses.replace(source, **options)


def layout_classes(name: str = DEFAULT_LAYOUT) -> int:
    """How many of AffectNet's expression codes the layout ``name`` labels, the default of
    ``data.classes``: its reader's ``CLASSES`` (RAF-DB's and FER2013's seven, no Contempt), else
    all of them (AffectNet's, and layouts that name their classes in the data)."""
    return len(getattr(_layout(name), "CLASSES", EXPRESSION_NAMES))


def layout_protocol(name: str = DEFAULT_LAYOUT) -> str:
    """The default of ``data.protocol`` for the layout ``name``: its reader's ``PROTOCOL``, else
    ``holdout`` (AffectNet's layouts: train_set split into train and test, the original's)."""
    return getattr(_layout(name), "PROTOCOL", "holdout")


def settings_of(source: Reader) -> dict[str, Any]:
    """A reader's settings, its defaults included: what a cached index of its layout is for."""
    return dataclasses.asdict(source) if dataclasses.is_dataclass(source) else {}


def layout_subsets(source: Reader) -> tuple[int, ...]:
    """The subsets ``source``'s layout always has (see the module docstring)."""
    return tuple(getattr(source, "subsets", (TRAIN_SET, VAL_SET)))


def crop_margin(source: Reader) -> float:
    """How far ``source``'s face boxes are widened before their faces are cut out (see the module
    docstring); 0 for a layout without boxes."""
    return float(getattr(source, "crop_margin", 0.0))


def image_root(source: Reader, root: Path, cache: Path) -> Path:
    """The folder ``source``'s sample images are relative to: ``root``, or its `store`."""
    store = getattr(source, "store", None)
    return root if store is None else store(root, cache)
