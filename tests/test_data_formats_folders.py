"""Class folders: folder names as AffectNet's codes end to end; planted faults counted."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.data.index import load_or_build_index
from fer_lightning.errors import ConfigError
from tests.data_fixtures import within
from tests.layout_fixtures import face, make_folders, prepared, trained_predictions, write_jpeg


def test_a_fast_dev_run_predicts_in_canonical_codes(tmp_path, monkeypatch):
    root = make_folders(tmp_path / "f", per_class=2)
    frame = trained_predictions(monkeypatch, tmp_path, "folders", root, "data.classes=7")
    folders = frame["path"].map(lambda p: os.path.basename(os.path.dirname(p)))
    assert (frame["path"].str.contains("/test/")).all() and len(frame) == 14
    codes = {"Angry": 6, "Disgust": 5, "Fear": 4, "Happy": 1, "Sad": 2, "Surprise": 3}
    codes["Neutral"] = 0
    assert (frame["true_expression"] == folders.map(codes)).all()


def test_a_missing_val_folder_is_drawn_from_train(tmp_path):
    root = make_folders(tmp_path / "f", per_class=4, parts=("Training", "test"))
    dm = prepared(root, "folders", classes=7, val_fraction=0.25)
    assert dm.split_sizes == {"train": 21, "val": 7, "test": 28}
    assert np.isnan(dm.datasets["train"][0]["va"].numpy()).all()


def test_planted_faults_are_counted_and_excluded(tmp_path):
    root = make_folders(tmp_path / "f", per_class=1)
    write_jpeg(root / "train" / "bored" / "0.jpg", face(0, 0))
    write_jpeg(root / "train" / "loose.jpg", face(0, 0))
    (root / "train" / "Happy" / "notes.txt").write_text("x")
    os.mkfifo(root / "train" / "Happy" / "fifo.jpg")
    (root / "train" / "Sad" / "empty.png").write_bytes(b"")
    (root / "other").mkdir()  # not a split folder: not read
    write_jpeg(root / "other" / "Happy" / "0.jpg", face(1, 0))
    _, report = within(60, lambda: load_or_build_index(root, tmp_path / "c", layout="folders"))
    assert report.problems == {
        "empty_file": ["train_set/train/Sad/empty.png"],
        "not_a_regular_file": ["train_set/train/Happy/fifo.jpg"],
        "not_an_image": ["train_set/train/Happy/notes.txt"],
        "outside_class_folder": ["train_set/train/loose.jpg"],
        "unknown_class": ["train_set/train/bored/0.jpg"],
    }
    assert report.usable == {"train_set": 7, "test_set": 7}


def test_no_split_folder_is_one_line(tmp_path):
    (tmp_path / "happy").mkdir()
    with pytest.raises(ConfigError, match="no train/, val/ or test/ folder"):
        AffectNetDataModule(root=str(tmp_path), format="folders").prepare_data()
