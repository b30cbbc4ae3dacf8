"""RAF-DB's layout: labels 1-7 become AffectNet's codes end to end; planted faults counted."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.data.index import load_or_build_index
from fer_lightning.errors import ConfigError
from tests.data_fixtures import within
from tests.layout_fixtures import (
    RAFDB_CODES,
    face,
    make_rafdb,
    prepared,
    trained_predictions,
    write_jpeg,
)


def test_a_fast_dev_run_predicts_in_canonical_codes(tmp_path, monkeypatch):
    root = make_rafdb(tmp_path / "raf")
    frame = trained_predictions(monkeypatch, tmp_path, "rafdb", root)
    names = frame["path"].map(os.path.basename)
    assert names.str.startswith("test_").all() and len(frame) == 7  # RAF-DB's own test part
    happy = frame[names == "test_00004_aligned.jpg"]  # RAF-DB's label 4, Happiness
    assert happy["true_expression"].tolist() == [1]
    assert frame["true_valence"].isna().all() and frame["true_arousal"].isna().all()
    assert [c for c in frame if c.startswith("prob_")] == [f"prob_{k}" for k in range(7)]


def test_original_images_and_nan_valence_arousal_reach_the_items(tmp_path):
    root = make_rafdb(tmp_path / "raf", train=14, test=7, images="original")
    dm = prepared(root, "rafdb", images="original", classes=7)
    test = dm.datasets["test"]
    assert [os.path.basename(test.path(i)) for i in range(3)] == [
        "test_00001.jpg",
        "test_00002.jpg",
        "test_00003.jpg",
    ]
    assert [test[i]["expression"] for i in range(7)] == [RAFDB_CODES[k] for k in range(1, 8)]
    assert np.isnan(test[0]["va"].numpy()).all()
    batch = next(iter(dm.train_dataloader()))
    assert batch["va"].shape == (4, 2) and batch["va"].isnan().all()
    assert dm.split_sizes["val"] >= 1 and sum(dm.split_sizes.values()) == 21  # val from train


def test_planted_faults_are_counted_and_excluded(tmp_path):
    root = make_rafdb(tmp_path / "raf", train=14, test=7)
    labels = root / "EmoLabel" / "list_patition_label.txt"
    images = root / "Image" / "aligned"
    labels.write_text(
        labels.read_text()
        + "train_00090.jpg 9\nvalid_00001.jpg 1\ntrain_00001.jpg 2\njust_a_name\n"
        + "train_00091.jpg 3\ntrain_00092.jpg 3\ntrain_00093.jpg 3\n"
    )
    for k in (90,):
        write_jpeg(images / f"train_{k:05d}_aligned.jpg", face(1, k))
    write_jpeg(images / "valid_00001_aligned.jpg", face(1, 0))
    (images / "train_00092_aligned.jpg").write_bytes(b"\xff\xd8" + os.urandom(300) + b"\xff\xd9")
    os.mkfifo(images / "train_00093_aligned.jpg")
    index, report = within(
        60, lambda: load_or_build_index(root, tmp_path / "cache", layout="rafdb", quiet=True)
    )
    assert report.problems == {
        "duplicate_sample": ["train_set/train_00001@line_24"],
        "malformed_line": ["train_set/line_25"],
        "missing_image": ["train_set/train_00091"],
        "not_a_regular_file": ["train_set/train_00093"],
        "unknown_label": ["train_set/train_00090"],
        "unknown_part": ["train_set/valid_00001"],
        "unreadable_image": ["train_set/train_00092"],
    }
    assert report.usable == {"train_set": 14, "test_set": 7} and len(index) == 21


def test_a_missing_or_odd_label_list_is_one_line(tmp_path):
    root = make_rafdb(tmp_path / "raf", train=2, test=1)
    labels = root / "EmoLabel" / "list_patition_label.txt"
    labels.unlink()
    with pytest.raises(ConfigError, match="label list not found"):
        load_or_build_index(root, tmp_path / "c", layout="rafdb")
    os.mkfifo(labels)
    with pytest.raises(ConfigError, match=r"label list not found|not opened") as error:
        within(10, lambda: load_or_build_index(root, tmp_path / "c", layout="rafdb"))
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=r"data\.images must be aligned or original"):
        AffectNetDataModule(root=str(root), format="rafdb", images="cropped").prepare_data()
