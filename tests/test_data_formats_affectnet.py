"""AffectNet's .npy layout: both encodings of a label file; malformed and odd label files."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fer_lightning.data.formats.affectnet import read_scalar
from fer_lightning.data.odd_files import OddFile
from tests.data_fixtures import MALFORMED_LABELS, within


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (np.array("1"), 1.0),
        (np.array("0.785714"), 0.785714),
        (np.array("-2"), -2.0),
        (np.array(1, dtype=np.int64), 1.0),
        (np.array(0.785714, dtype=np.float64), 0.785714),
        (np.array(-0.5, dtype=np.float32), -0.5),
    ],
)
def test_read_scalar_reads_strings_and_numbers(tmp_path, stored, expected):
    np.save(tmp_path / "x.npy", stored)
    assert read_scalar(tmp_path / "x.npy") == pytest.approx(expected)


def test_read_scalar_rejects_arrays_and_text(tmp_path):
    np.save(tmp_path / "many.npy", np.zeros(3))
    np.save(tmp_path / "word.npy", np.array("happy"))
    with pytest.raises(ValueError):
        read_scalar(tmp_path / "many.npy")
    with pytest.raises(ValueError):
        read_scalar(tmp_path / "word.npy")


@pytest.mark.parametrize("content", MALFORMED_LABELS.values(), ids=MALFORMED_LABELS.keys())
def test_read_scalar_rejects_malformed_files_without_allocating(tmp_path, content):
    (tmp_path / "x.npy").write_bytes(content)
    with pytest.raises(ValueError):
        read_scalar(tmp_path / "x.npy")


def test_read_scalar_never_opens_a_fifo_or_a_folder(tmp_path):
    os.mkfifo(tmp_path / "fifo.npy")
    (tmp_path / "folder.npy").mkdir()
    for name in ("fifo.npy", "folder.npy"):
        with pytest.raises(OddFile, match="not opened"):
            within(10, lambda name=name: read_scalar(tmp_path / name))
