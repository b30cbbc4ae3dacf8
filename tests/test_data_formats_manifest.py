"""A manifest: codes and class names as AffectNet's codes end to end, valence/arousal where given
and NaN where not, its split column as the parts; planted faults counted."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.data.index import load_or_build_index
from fer_lightning.errors import ConfigError
from tests.layout_fixtures import (
    face,
    make_manifest,
    prepared,
    trained_predictions,
    write_csv,
    write_jpeg,
)

HEADER = ["path", "expression", "valence", "arousal", "split"]


def test_a_fast_dev_run_predicts_in_canonical_codes(tmp_path, monkeypatch):
    manifest = make_manifest(tmp_path / "m")
    root = f"data.root={tmp_path / 'm'}"
    frame = trained_predictions(
        monkeypatch, tmp_path, "manifest", tmp_path / "m", root, f"data.manifest={manifest}"
    )
    names = frame["path"].map(os.path.basename)
    assert sorted(names) == ["11.jpg", "17.jpg", "23.jpg", "5.jpg"]  # the rows split=test
    codes = dict(zip(names, frame["true_expression"], strict=True))
    assert codes == {"5.jpg": 5, "11.jpg": 4, "17.jpg": 3, "23.jpg": 2}  # k % 7, named or coded


def test_valence_arousal_where_given_nan_where_not(tmp_path):
    manifest = make_manifest(tmp_path / "m")
    dm = prepared(tmp_path / "m", "manifest", manifest=str(manifest))
    assert dm.split_sizes == {"train": 16, "val": 4, "test": 4}
    train = dm.datasets["train"]
    va = {os.path.basename(train.path(i)): train[i]["va"].numpy() for i in range(len(train))}
    assert np.allclose(va["0.jpg"], [0.5, -0.25]) and np.isnan(va["1.jpg"]).all()


def test_a_manifest_without_split_draws_val_and_test_from_its_rows(tmp_path):
    rows = [[f"{k}.jpg", str(k % 7)] for k in range(28)]
    for k in range(28):
        write_jpeg(tmp_path / f"{k}.jpg", face(k % 7, k))
    write_csv(tmp_path / "list.csv", ["path", "expression"], rows)
    dm = prepared(
        tmp_path,
        "manifest",
        manifest=str(tmp_path / "list.csv"),
        test_fraction=0.25,
        val_fraction=0.2,
    )
    assert dm.split_sizes == {"train": 17, "val": 4, "test": 7}


def test_planted_faults_are_counted_and_excluded(tmp_path):
    root = tmp_path / "m"
    manifest = make_manifest(root, count=12)
    write_jpeg(root / "odd.jpg", face(1, 0))
    rows = [
        ["faces/0.jpg", "Happy", "", "", "train"],  # listed again
        ["odd.jpg", "joyful", "", "", "train"],
        ["odd.jpg", "Happy", "", "", "holdout"],
        ["nowhere.jpg", "Happy", "", "", "train"],
        ["faces/1.jpg", "9", "-2", "-2", "train"],
        ["faces/2.jpg", "Sad", "3", "0", "train"],
        ["faces/3.jpg", "Sad", "0.5", "", "train"],
        ["faces/4.jpg", "Sad", "high", "0", "train"],
        ["faces/5.jpg", "11", "", "", "train"],
        ["dangling.jpg", "Sad", "", "", "train"],
    ]
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    text = manifest.read_text().splitlines()[1:13]
    listed = [line.split(",") for line in text if not line.startswith(("faces/1.", "faces/2."))]
    listed = [r for r in listed if r[0] not in {"faces/3.jpg", "faces/4.jpg", "faces/5.jpg"}]
    write_csv(manifest, HEADER, [*listed, *rows])
    _, report = load_or_build_index(
        root, tmp_path / "c", layout="manifest", options={"manifest": str(manifest)}, quiet=True
    )
    n = len(listed)
    assert report.problems == {
        "duplicate_sample": [
            f"train_set/faces/0.jpg@row_{n + 1}",
            f"train_set/odd.jpg@row_{n + 3}",
        ],
        "unknown_label": ["train_set/odd.jpg"],
        "unknown_split": [f"train_set/odd.jpg@row_{n + 3}"],
        "missing_image": ["train_set/nowhere.jpg"],
        "code_9_uncertain": ["train_set/faces/1.jpg"],
        "va_not_annotated": ["train_set/faces/1.jpg"],
        "va_out_of_range": ["train_set/faces/2.jpg"],
        "va_partial": ["train_set/faces/3.jpg"],
        "malformed_value": ["train_set/faces/4.jpg"],
        "unknown_code": ["train_set/faces/5.jpg"],
        "broken_link": ["train_set/dangling.jpg"],
    }


def test_a_missing_manifest_or_column_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"add data\.manifest=FILE\.csv"):
        AffectNetDataModule(root=str(tmp_path), format="manifest").prepare_data()
    with pytest.raises(ConfigError, match="manifest not found"):
        AffectNetDataModule(
            root=str(tmp_path), format="manifest", manifest=str(tmp_path / "no.csv")
        ).prepare_data()
    write_csv(tmp_path / "list.csv", ["file", "label"], [["a.jpg", "1"]])
    with pytest.raises(ConfigError, match="has no column 'path'"):
        load_or_build_index(
            tmp_path,
            tmp_path / "c",
            layout="manifest",
            options={"manifest": str(tmp_path / "list.csv")},
        )
