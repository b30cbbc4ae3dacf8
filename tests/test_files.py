"""Atomic writes: the whole new content or the old file, never a mix, and the usual permissions."""

from __future__ import annotations

import os
import stat

import pytest

from fer_lightning.files import atomic_write, write_text_atomic


def test_a_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "sub" / "report.json"
    write_text_atomic(path, "first\n")
    write_text_atomic(path, "second\n")
    assert path.read_text() == "second\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.json"]


def test_an_error_while_writing_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "index.npz"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(path) as file:
        file.write(b"half of the new")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.npz"]


def test_the_file_gets_the_permissions_of_a_plain_write(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "metrics.csv", "step\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.csv").stat().st_mode) == 0o644


def test_a_write_that_need_not_be_durable_is_atomic_without_flushing(tmp_path, monkeypatch):
    flushed = []
    monkeypatch.setattr(os, "fsync", flushed.append)
    path = tmp_path / "crop.jpg"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(path, durable=False) as file:
        file.write(b"half")
        raise RuntimeError("interrupted")
    with atomic_write(path, durable=False) as file:
        file.write(b"new")
    assert path.read_bytes() == b"new" and flushed == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crop.jpg"]
    write_text_atomic(path, "durable")
    assert len(flushed) == 2  # the file and its folder
