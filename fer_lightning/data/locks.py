"""One process at a time per dataset while it is generated, indexed and split.

The lock files live in a folder of the user's own (``locks/`` in the user cache of
`fer_lightning.paths`, mode 0700), not in the shared temporary directory: there the name is
predictable, and another user could plant a symbolic link under it that the lock's open would
follow and truncate. Here a lock is opened relative to the checked folder, never through a link,
never truncated, and used only when it is a regular file of this user; anything else is a
one-line ConfigError. On Windows (no owners, modes or descriptor-relative opens) the lock file is
opened plainly in the user's own profile folder; the lock is `file_locks`' on either.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from fer_lightning.errors import ConfigError
from fer_lightning.file_locks import OPEN_FLAGS, lock, try_lock, unlock
from fer_lightning.paths import user_cache_dir

log = logging.getLogger(__name__)

_FIX = "set XDG_CACHE_HOME to a folder of your own"


def lock_dir() -> Path:
    return user_cache_dir() / "locks"


def lock_path(root: Path) -> Path:
    """The lock file of the dataset at ``root`` (named after its resolved path)."""
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return lock_dir() / f"dataset-{digest}.lock"


@contextlib.contextmanager
def dataset_lock(root: Path) -> Iterator[None]:
    """Holds an exclusive lock named after `root` for as long as the block runs.

    Concurrent jobs of a sweep (or each node's rank 0) may prepare the same dataset at once; without
    the lock, one could delete a half-written synthetic set under another. The lock serialises the
    processes of one user on one machine; jobs on several machines sharing a file system should
    prepare the data once beforehand.
    """
    path = lock_path(root)
    fd = _open_own(path) if os.name == "posix" else _open_plain(path)
    try:
        if not try_lock(fd):
            log.info("waiting for another process preparing %s (lock %s)", root, path)
            lock(fd)
        try:
            yield
        finally:
            unlock(fd)
    finally:
        os.close(fd)


def _open_plain(path: Path) -> int:
    """Where there are no owners and modes to check (Windows): the lock file, in the user's own
    profile folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, OPEN_FLAGS, 0o600)


def _open_own(path: Path) -> int:
    """A descriptor of the lock file ``path``, created 0600 in its folder, created 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        raise ConfigError(
            f"cannot use the lock folder {path.parent} ({error.strerror}): {_FIX}"
        ) from None
    try:
        _require_own(os.fstat(folder), path.parent, "a folder", stat.S_ISDIR)
        if os.fstat(folder).st_mode & 0o077:
            os.fchmod(folder, 0o700)
        try:
            fd = os.open(path.name, OPEN_FLAGS, 0o600, dir_fd=folder)
        except OSError as error:
            raise ConfigError(
                f"cannot open the lock file {path} ({error.strerror}; a symbolic link there is "
                "never followed): remove it"
            ) from None
    finally:
        os.close(folder)
    try:
        _require_own(os.fstat(fd), path, "a regular file", stat.S_ISREG)
    except ConfigError:
        os.close(fd)
        raise
    return fd


def _require_own(
    info: os.stat_result, path: Path, kind: str, is_kind: Callable[[int], bool]
) -> None:
    if not is_kind(info.st_mode):
        raise ConfigError(f"the lock path {path} is not {kind}: remove it, or {_FIX}")
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"the lock path {path} belongs to another user (uid {info.st_uid}): {_FIX}"
        )
