"""The dataset lock: in a folder of the user's own, never through a planted link, one holder."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import threading

import pytest

from fer_lightning.data import locks
from fer_lightning.data.locks import dataset_lock, lock_path
from fer_lightning.errors import ConfigError
from tests.data_fixtures import within
from tests.test_file_locks import use_fake_msvcrt


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "fer_lightning" / "locks"


def take(root) -> None:
    with dataset_lock(root):
        pass


def test_the_lock_lives_in_a_private_folder_of_the_user(tmp_path, cache, monkeypatch):
    root, shared = tmp_path / "ds", tmp_path / "tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    with dataset_lock(root):
        assert lock_path(root).parent == cache
        assert stat.S_IMODE(cache.stat().st_mode) == 0o700
        assert stat.S_IMODE(lock_path(root).stat().st_mode) & 0o077 == 0
    assert os.listdir(shared) == []  # nothing in the shared temporary directory


def test_a_planted_link_is_never_followed(tmp_path, cache):
    root = tmp_path / "ds"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    cache.mkdir(parents=True)
    lock_path(root).symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link there is never followed") as caught:
        take(root)
    assert "\n" not in str(caught.value)
    assert victim.read_text() == "precious\n"


def test_a_fifo_or_another_users_lock_is_a_one_line_error(tmp_path, cache, monkeypatch):
    root = tmp_path / "ds"
    cache.mkdir(parents=True, mode=0o700)
    os.mkfifo(lock_path(root))
    with pytest.raises(ConfigError, match="is not a regular file"):
        within(10, lambda: take(root))
    lock_path(root).unlink()
    take(root)
    monkeypatch.setattr(os, "getuid", lambda: os.stat(cache).st_uid + 1)
    with pytest.raises(ConfigError, match="belongs to another user") as caught:
        take(root)
    assert "\n" not in str(caught.value)


def test_a_second_holder_waits_for_the_first(tmp_path, cache, caplog):
    root, order = tmp_path / "ds", []
    entered = threading.Event()

    def second() -> None:
        entered.wait()
        with dataset_lock(root):
            order.append("second")

    thread = threading.Thread(target=second)
    with caplog.at_level(logging.INFO, logger=locks.__name__), dataset_lock(root):
        thread.start()
        entered.set()
        within(10, lambda: _wait_for(caplog, "waiting for another process"))
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"]


def _wait_for(caplog: pytest.LogCaptureFixture, text: str) -> None:
    while text not in caplog.text:
        threading.Event().wait(0.01)


def test_without_fcntl_the_lock_file_is_opened_plainly_and_locked_as_on_windows(
    tmp_path, cache, monkeypatch
):
    monkeypatch.setattr(locks, "_open_own", locks._open_plain)
    fake = use_fake_msvcrt(monkeypatch)
    with dataset_lock(tmp_path / "ds"):
        assert lock_path(tmp_path / "ds").is_file() and len(fake.held) == 1
    assert fake.held == set()
