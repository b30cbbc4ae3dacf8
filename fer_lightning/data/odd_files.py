"""Entries that are not plain files, and reading the ones that are, within a size bound.

A dataset or a folder to predict on may hold a directory named like an image, a symbolic link to
nothing or to itself, a FIFO (opening one waits forever for a writer), a device (opening some has
side effects), or a file far larger than any image. Each is named by a kind of `FILE_PROBLEMS`
instead of raising or hanging, so the caller counts it and goes on; only regular files are ever
opened. See docs/data.md.
"""

from __future__ import annotations

import errno
import os
import stat

FILE_PROBLEMS = {
    "not_a_regular_file": "a directory, FIFO, socket or device where a file should be (not opened)",
    "broken_link": "symbolic link to nothing",
    "link_loop": "symbolic link that loops back on itself",
    "unreadable_file": "file that cannot be opened or read (permissions, I/O error)",
    "file_too_large": "file larger than an image or label file can be (not read)",
}


class OddFile(Exception):
    """A path that is not a readable regular file of bounded size; `kind` is in FILE_PROBLEMS."""

    def __init__(self, kind: str, path: str | os.PathLike) -> None:
        super().__init__(f"{path}: {FILE_PROBLEMS[kind]}")
        self.kind = kind


def _kind_of_error(error: OSError, path: str | os.PathLike) -> str:
    if error.errno == errno.ELOOP:
        return "link_loop"
    if error.errno == errno.ENOENT and os.path.islink(path):
        return "broken_link"
    return "unreadable_file"


def file_problem(path: str | os.PathLike) -> str | None:
    """The kind of odd entry ``path`` is, from its metadata alone; None for a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return _kind_of_error(error, path)
    return None if stat.S_ISREG(mode) else "not_a_regular_file"


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of ``path``; raises `OddFile` unless it is a regular file of at most ``limit``.

    The file is opened without blocking and checked again on the open descriptor, so an entry
    swapped for a FIFO between the check and the open cannot hang the reader.
    """
    kind = file_problem(path)
    if kind is not None:
        raise OddFile(kind, path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise OddFile(_kind_of_error(error, path), path) from error
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OddFile("not_a_regular_file", path)
        if info.st_size > limit:
            raise OddFile("file_too_large", path)
        try:
            data = file.read(limit + 1)
        except OSError as error:
            raise OddFile("unreadable_file", path) from error
    if len(data) > limit:  # it grew after the check
        raise OddFile("file_too_large", path)
    return data
