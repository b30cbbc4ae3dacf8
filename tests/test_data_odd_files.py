"""Odd entries named by their metadata, never opened; regular files read within a bound."""

from __future__ import annotations

import os

import pytest

from fer_lightning.data.odd_files import OddFile, file_problem, read_regular
from tests.data_fixtures import within


@pytest.fixture
def entries(tmp_path):
    (tmp_path / "file").write_bytes(b"12345")
    (tmp_path / "folder.jpg").mkdir()
    os.mkfifo(tmp_path / "fifo.jpg")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "file")
    return tmp_path


def test_each_odd_entry_is_named_by_its_kind(entries):
    kinds = {name: file_problem(entries / name) for name in sorted(os.listdir(entries))}
    assert kinds == {
        "dangling.jpg": "broken_link",
        "fifo.jpg": "not_a_regular_file",
        "file": None,
        "folder.jpg": "not_a_regular_file",
        "link.jpg": None,
        "loop.jpg": "link_loop",
    }


def test_read_regular_raises_the_kind_without_hanging_on_a_fifo(entries):
    assert read_regular(entries / "link.jpg", limit=5) == b"12345"
    for name, kind in [
        ("fifo.jpg", "not_a_regular_file"),
        ("folder.jpg", "not_a_regular_file"),
        ("dangling.jpg", "broken_link"),
        ("loop.jpg", "link_loop"),
    ]:
        with pytest.raises(OddFile) as caught:
            within(10, lambda name=name: read_regular(entries / name, limit=100))
        assert caught.value.kind == kind, name
    with pytest.raises(OddFile) as caught:
        read_regular(entries / "file", limit=4)
    assert caught.value.kind == "file_too_large"
