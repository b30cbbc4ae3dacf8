"""AffectNet's .npy layout: both encodings of a label file."""

from __future__ import annotations

import numpy as np
import pytest

from fer_lightning.data.formats.affectnet import read_scalar


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
