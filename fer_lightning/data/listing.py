"""What the readers of fer_lightning/data/formats share: a layout's label file read whole, and the
cheap facts about files and folders that fingerprint a layout.

A label file (RAF-DB's list, FER2013's CSV, a manifest) is one file that every sample depends on,
so what is wrong with it is a one-line ConfigError rather than a counted problem: missing, a
FIFO, a link to nothing, too large, not text. It is read as `fer_lightning.data.odd_files` reads
any file, so a FIFO named like it never hangs the reader.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

from fer_lightning.data.odd_files import FILE_PROBLEMS, OddFile, read_regular
from fer_lightning.errors import ConfigError

# FER2013's CSV, the largest label file of a published layout, is 287 MB.
MAX_LABEL_FILE_BYTES = 2**30


def read_label_file(path: Path, what: str) -> str:
    """The text of the label file ``path`` (``what`` names it in errors), BOM removed."""
    if not os.path.lexists(path):
        raise ConfigError(f"{what} not found at {path} (see docs/data.md)")
    try:
        data = read_regular(path, MAX_LABEL_FILE_BYTES)
    except OddFile as odd:
        raise ConfigError(f"cannot read {what} {path}: {FILE_PROBLEMS[odd.kind]}") from odd
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {error.start})") from error


def csv_records(
    text: str, path: Path, required: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number from 1, {column: value}) of a CSV file with a header row naming at least the
    ``required`` columns (any order, names stripped); short rows get empty values."""
    rows = csv.reader(text.splitlines())
    header = [name.strip() for name in next(rows, [])]
    missing = [name for name in required if name not in header]
    if missing:
        raise ConfigError(
            f"{path} has no column {missing[0]!r}: its first row must name the columns "
            f"{', '.join(required)} (found {', '.join(header) or 'nothing'})"
        )
    for number, row in enumerate(rows, start=1):
        yield number, dict(zip(header, [*row, *[""] * (len(header) - len(row))], strict=False))


def file_stamp(path: Path) -> list[int]:
    """Modification time (ns) and size: they change when the file is replaced or edited."""
    info = path.stat()
    return [info.st_mtime_ns, info.st_size]


def folder_stamp(directory: Path) -> list[int]:
    """Modification time (ns) and entry count: they change when an entry is added or removed."""
    return [directory.stat().st_mtime_ns, len(os.listdir(directory))]


def listable(directory: Path, what: str) -> list[str]:
    """The sorted entries of ``directory``; a one-line ConfigError when it cannot be listed."""
    if not directory.is_dir():
        raise ConfigError(f"{what} not found at {directory} (see docs/data.md)")
    try:
        return sorted(os.listdir(directory))
    except OSError as error:
        raise ConfigError(
            f"cannot list {directory}: {error.strerror} (check its permissions)"
        ) from error
