"""Exclusive locks held on an open file, on POSIX (`flock`) and on Windows (`msvcrt.locking`).

Either lock goes with the descriptor: closing it, or the process ending however it ends, releases
it, so a killed process leaves no stale lock. The dataset lock (`data/locks.py`) and the run
directory's (`runs/run_lock.py`) build on these.
"""

from __future__ import annotations

import os
import time

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:  # POSIX
    msvcrt = None

# How lock files are opened: read-write, created if missing, never truncated, and where the
# platform has them, never through a symbolic link, never blocking on a FIFO, not inherited.
OPEN_FLAGS = os.O_RDWR | os.O_CREAT
for _name in ("O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC", "O_NOINHERIT", "O_BINARY"):
    OPEN_FLAGS |= getattr(os, _name, 0)
# Windows locks byte ranges, and another process cannot read a locked byte: the lock is on one
# byte far past what a lock file holds (the run lock's holder pid, which a second process reads).
WINDOWS_LOCKED_BYTE = 1 << 30
POLL_SECONDS = 0.1


def try_lock(fd: int) -> bool:
    """Takes the exclusive lock on `fd`; False, at once, where another descriptor holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    os.lseek(fd, WINDOWS_LOCKED_BYTE, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def lock(fd: int) -> None:
    """Takes the exclusive lock on `fd`, waiting for as long as another descriptor holds it."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    while not try_lock(fd):  # msvcrt's blocking mode gives up after 10 seconds
        time.sleep(POLL_SECONDS)


def unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return
    os.lseek(fd, WINDOWS_LOCKED_BYTE, os.SEEK_SET)
    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
