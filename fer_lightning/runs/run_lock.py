"""One process at a time in a run directory: the lock a command holds while it writes there.

Two processes in one run directory (the same command started twice, or a copy resumed while the
original runs) would save over each other's checkpoints and interleave their logs. The first
holds `<run_dir>/.lock` (an OS file lock, released however the process ends, so no stale lock is
left by a kill) from before it touches anything until it exits; a second refuses in one line.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from fer_lightning.errors import ConfigError

LOCK_FILE = ".lock"


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Holds `run_dir`'s lock, or refuses naming the process that holds it.

    Only global rank zero locks: the other ranks of a DDP run are the same run. The file is opened
    without following a symbolic link (a planted link cannot make this truncate another file)
    and must be a regular file.
    """
    if rank_zero_only.rank != 0:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        reason = "is a symbolic link" if exc.errno == errno.ELOOP else f"cannot be opened ({exc})"
        raise ConfigError(f"the run directory's lock {path} {reason}: remove it") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"the run directory's lock {path} is not a regular file: remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ConfigError(
                f"run directory {run_dir} is in use by another process (pid {holder}): wait for "
                "it to end, or choose another hydra.run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def holding_run_dir(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """`task` run holding the lock of its run directory, `cfg.paths.output_dir`."""

    @functools.wraps(task)
    def locked(cfg: DictConfig) -> Any:
        with run_dir_lock(Path(cfg.paths.output_dir)):
            return task(cfg)

    return locked
