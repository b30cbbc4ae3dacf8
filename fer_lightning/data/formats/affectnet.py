"""AffectNet's own layout: a JPEG per sample and a 0-d ``.npy`` file per label.

::

    <root>/{train_set,val_set}/images/<id>.jpg
    <root>/{train_set,val_set}/annotations/<id>_exp.npy  _val.npy  _aro.npy  (_lnd.npy unused)

The label files hold one number each, stored as a string (``'0.785714'``) or as a number
depending on the release. See README and docs/data.md.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from fer_lightning.data.decode import IMAGE_SUFFIXES
from fer_lightning.data.formats import Sample, label_problems
from fer_lightning.data.odd_files import OddFile, read_regular
from fer_lightning.errors import ConfigError
from fer_lightning.labels import AFFECTNET_SUBSETS, SUBSETS, TRAIN_SET, VAL_SET

ANNOTATIONS = ("exp", "val", "aro")  # landmarks (_lnd) are not used, so not required
_PARTS = ("images", "annotations")


# A 0-d .npy file takes about 130 bytes; anything near this bound is not a label.
MAX_LABEL_BYTES = 2**20


def read_scalar(path: str | Path) -> float:
    """The number in a 0-d .npy file, stored as a string ('0.785714') or as a number by release.

    Raises `OddFile` for what is not a regular file of bounded size, and ValueError for anything
    but one finite number (an empty or malformed file, a pickled object, an array, text, NaN). The
    header is read before the data, so a header claiming billions of values allocates nothing.
    """
    stream = io.BytesIO(read_regular(path, MAX_LABEL_BYTES))
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, _ = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, _, _ = np.lib.format.read_array_header_2_0(stream)
    if math.prod(shape) != 1:
        raise ValueError(f"{path} holds {math.prod(shape)} values, expected 1")
    stream.seek(0)
    value = float(np.load(stream, allow_pickle=False).reshape(()).item())
    if not math.isfinite(value):
        raise ValueError(f"{path} holds {value}, expected a finite number")
    return value


@dataclass(frozen=True)
class _Entry:
    """One sample id seen in a subset's listing (or a file there that is not an image)."""

    subset: int
    name: str  # the sample id, or the file name of a non-image
    image_file: str | None
    annotated: bool  # all of _exp, _val and _aro exist
    stray: bool = False  # a file in images/ without an image suffix


class NpyLayout:
    """The reader of AffectNet's layout (see the module docstring)."""

    subsets: ClassVar[tuple[int, ...]] = (TRAIN_SET, VAL_SET)

    problems: ClassVar[dict[str, str]] = {
        "missing_image": "annotations without an image",
        "missing_annotation": "image without all of <id>_exp/_val/_aro.npy",
        "unreadable_annotation": "annotation .npy that is not one finite number (empty, "
        "malformed, pickled, an array, text, NaN or inf)",
        "not_an_image": "file in images/ without an image suffix",
    }

    def require(self, root: Path) -> None:
        if not all((root / subset).is_dir() for subset in AFFECTNET_SUBSETS):
            raise ConfigError(
                f"dataset not found at {root}: expected {'/ and '.join(AFFECTNET_SUBSETS)}/ "
                "(see README), "
                "or run with data=synthetic"
            )
        for subset in AFFECTNET_SUBSETS:
            for part in _PARTS:
                directory = root / subset / part
                if not directory.is_dir():
                    raise ConfigError(
                        f"dataset at {root} is incomplete: {subset}/{part}/ is missing "
                        "(expected AffectNet's layout, see README)"
                    )
                try:
                    os.listdir(directory)
                except OSError as error:
                    raise ConfigError(
                        f"cannot list {directory}: {error.strerror} (check its permissions)"
                    ) from error

    def fingerprint(self, root: Path) -> dict[str, list[int]]:
        """Modification time (ns) and entry count of the four data directories."""
        result = {}
        for subset in AFFECTNET_SUBSETS:
            for part in _PARTS:
                directory = root / subset / part
                stamp = [directory.stat().st_mtime_ns, len(os.listdir(directory))]
                result[f"{subset}/{part}"] = stamp
        return result

    def scan(self, root: Path) -> list[_Entry]:
        entries = []
        for subset, name in enumerate(AFFECTNET_SUBSETS):
            images: dict[str, str] = {}
            for file in sorted(os.listdir(root / name / "images")):
                stem, suffix = os.path.splitext(file)
                if suffix.lower() in IMAGE_SUFFIXES:
                    images.setdefault(stem, file)
                else:
                    entries.append(_Entry(subset, file, None, annotated=False, stray=True))
            parts: dict[str, set[str]] = {}
            for file in os.listdir(root / name / "annotations"):
                stem, _, part = file.removesuffix(".npy").rpartition("_")
                if file.endswith(".npy") and part in ANNOTATIONS:
                    parts.setdefault(stem, set()).add(part)
            entries += [
                _Entry(subset, sid, images.get(sid), len(parts.get(sid, ())) == len(ANNOTATIONS))
                for sid in sorted(images.keys() | parts.keys())
            ]
        return entries

    def read(self, root: Path, entry: _Entry) -> Sample:
        if entry.stray:
            return Sample(entry.subset, entry.name, None, problems=("not_an_image",))
        subset = SUBSETS[entry.subset]
        image = None if entry.image_file is None else f"{subset}/images/{entry.image_file}"
        labels, problems = (-1, 0.0, 0.0), ["missing_annotation"]
        if entry.annotated:
            labels, problems = _read_labels(root / subset / "annotations", entry.name)
        if image is None:
            problems.append("missing_image")
        return Sample(entry.subset, entry.name, image, *labels, problems=tuple(problems))


def _read_labels(ann_dir: Path, sample_id: str) -> tuple[tuple[int, float, float], list[str]]:
    """(expression, valence, arousal) from a sample's three annotation files, and their problems."""
    try:
        code, valence, arousal = (
            read_scalar(ann_dir / f"{sample_id}_{part}.npy") for part in ANNOTATIONS
        )
    except OddFile as odd:
        return (-1, 0.0, 0.0), [odd.kind]
    except (OSError, ValueError, TypeError, EOFError):
        return (-1, 0.0, 0.0), ["unreadable_annotation"]
    expression = int(code) if float(code).is_integer() else -1
    return (expression, valence, arousal), label_problems(expression, valence, arousal)


READER = NpyLayout()
