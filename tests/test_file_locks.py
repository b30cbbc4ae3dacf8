"""Locks on an open file: flock on POSIX, msvcrt's byte-range lock where there is no fcntl."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fer_lightning import file_locks
from fer_lightning.errors import ConfigError
from fer_lightning.file_locks import OPEN_FLAGS, WINDOWS_LOCKED_BYTE, try_lock, unlock
from fer_lightning.runs.run_lock import run_dir_lock


class FakeMsvcrt:
    """msvcrt.locking's contract: LK_NBLCK raises OSError on a range another handle holds."""

    LK_UNLCK, LK_NBLCK = 0, 2

    def __init__(self) -> None:
        self.held: set[tuple[int, int]] = set()
        self.calls: list[tuple[int, int, int]] = []

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        where = os.lseek(fd, 0, os.SEEK_CUR)
        self.calls.append((where, mode, nbytes))
        key = (os.fstat(fd).st_ino, where)
        if mode == self.LK_UNLCK:
            self.held.discard(key)
        elif key in self.held:
            raise OSError("locked")
        else:
            self.held.add(key)


def use_fake_msvcrt(monkeypatch: pytest.MonkeyPatch) -> FakeMsvcrt:
    fake = FakeMsvcrt()
    monkeypatch.setattr(file_locks, "fcntl", None)
    monkeypatch.setattr(file_locks, "msvcrt", fake)
    return fake


def _open(path: Path) -> int:
    return os.open(path, OPEN_FLAGS, 0o600)


@pytest.mark.parametrize("platform", ["posix", "windows"])
def test_one_holder_at_a_time_until_it_unlocks(tmp_path, monkeypatch, platform):
    if platform == "windows":
        use_fake_msvcrt(monkeypatch)
    first, second = _open(tmp_path / "x.lock"), _open(tmp_path / "x.lock")
    try:
        assert try_lock(first) and not try_lock(second)
        unlock(first)
        assert try_lock(second)
    finally:
        os.close(first)
        os.close(second)


def test_windows_locks_one_byte_past_the_data_so_the_holder_pid_stays_readable(
    tmp_path, monkeypatch
):
    fake = use_fake_msvcrt(monkeypatch)
    with (
        run_dir_lock(tmp_path),
        pytest.raises(ConfigError, match=f"pid {os.getpid()}"),
        run_dir_lock(tmp_path),
    ):
        pass
    assert {where for where, _, _ in fake.calls} == {WINDOWS_LOCKED_BYTE}


def test_only_this_module_imports_fcntl():
    package = Path(file_locks.__file__).parent
    importers = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if "import fcntl" in path.read_text()
    }
    assert importers == {"file_locks.py"}
