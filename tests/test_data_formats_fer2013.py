"""FER2013's layout: pixel rows stored as images once, FER2013's labels and FERPlus's majority
votes as AffectNet's codes end to end; planted faults counted."""

from __future__ import annotations

import numpy as np
import pytest

from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.data.formats.fer2013 import ferplus_code
from fer_lightning.data.index import cache_dir_for, load_or_build_index
from fer_lightning.errors import ConfigError
from tests.layout_fixtures import (
    FER2013_CODES,
    FERPLUS_COLUMNS,
    make_fer2013,
    prepared,
    trained_predictions,
    write_csv,
)

SMALL = {"Training": 14, "PublicTest": 7, "PrivateTest": 7}


def test_a_fast_dev_run_predicts_in_canonical_codes(tmp_path, monkeypatch):
    rows = make_fer2013(tmp_path / "fer", SMALL)
    frame = trained_predictions(monkeypatch, tmp_path, "fer2013", tmp_path / "fer")
    assert len(frame) == 7  # PrivateTest tests
    # The test part's first row is fer2013.csv's row 22 (1-based), FER2013's 0, Angry.
    first = frame[frame["path"].str.endswith("test_set/00022.png")]
    assert rows[21][0] == "0" and first["true_expression"].tolist() == [6]
    expected = [FER2013_CODES[k] for k in range(7)]
    assert frame.sort_values("path")["true_expression"].tolist() == expected
    assert frame["true_valence"].isna().all()


def test_the_parts_are_the_usage_and_the_faces_are_stored_once(tmp_path):
    root = tmp_path / "fer"
    rows = make_fer2013(root, SMALL)
    dm = prepared(root, "fer2013", classes=7, image_size=48)
    assert dm.split_sizes == {"train": 14, "val": 7, "test": 7}
    item = dm.datasets["val"][0]
    pixels = np.array(rows[14][1].split(), dtype=np.uint8).reshape(48, 48)
    assert np.array_equal(item["image"][0].numpy(), pixels)  # lossless, gray in each channel
    assert np.isnan(item["va"].numpy()).all()
    stored = cache_dir_for(root, None, "fer2013") / "images"
    png = stored / "train_set" / "00001.png"
    before = png.stat().st_mtime_ns
    load_or_build_index(root, stored.parent, True, layout="fer2013", options={"labels": "fer2013"})
    assert png.stat().st_mtime_ns == before  # the store is reused while fer2013.csv is unchanged


def test_ferplus_majorities_become_codes_and_the_rest_is_excluded(tmp_path):
    root = tmp_path / "fer"
    make_fer2013(root, {"Training": 7, "PublicTest": 1, "PrivateTest": 1}, ferplus=True)
    votes = (root / "fer2013new.csv").read_text().splitlines()
    # Row 1 (Angry) gets FERPlus's contempt, rows 2-4 unknown, NF, no majority.
    fixed = {1: [0] * 7 + [6, 0, 0], 2: [2] + [0] * 7 + [8, 0], 3: [0] * 9 + [10]}
    fixed[4] = [4, 4, 2] + [0] * 7
    lines = [v.split(",") for v in votes[1:]]
    for row, counts in fixed.items():
        lines[row - 1][2:] = map(str, counts)
    write_csv(root / "fer2013new.csv", ["Usage", "Image name", *FERPLUS_COLUMNS], lines)
    index, report = load_or_build_index(
        root, tmp_path / "c", layout="fer2013", options={"labels": "ferplus"}, quiet=True
    )
    assert report.problems == {
        "ferplus_unknown": ["train_set/00002"],
        "ferplus_not_a_face": ["train_set/00003"],
        "ferplus_no_majority": ["train_set/00004"],
    }
    codes = dict(zip(index.ids, index.expression.tolist(), strict=True))
    assert codes["00001"] == 7 and codes["00005"] == FER2013_CODES[4]  # contempt; sad
    assert ferplus_code(["1", "1", "0", "0", "0", "0", "0", "0", "0", "0"])[1] == (
        "ferplus_no_majority"  # single votes are outliers, as FERPlus drops them
    )


def test_planted_faults_are_counted_and_excluded(tmp_path):
    root = tmp_path / "fer"
    rows = make_fer2013(root, SMALL)
    rows[0][1] = rows[0][1].rsplit(" ", 1)[0]  # 2,303 values
    rows[1][1] = rows[1][1].replace("0", "x", 1) if "0" in rows[1][1] else "x"
    rows[2][2] = "Validation"
    rows[3][0] = "7"
    rows[4][0] = "angry"
    rows[5][1] = " ".join(["300"] * 2304)
    write_csv(root / "fer2013.csv", ["emotion", "pixels", "Usage"], rows)
    _, report = load_or_build_index(root, tmp_path / "c", layout="fer2013", quiet=True)
    assert report.problems == {
        "unreadable_pixels": ["train_set/00001", "train_set/00002", "train_set/00006"],
        "unknown_usage": ["train_set/00003"],
        "unknown_label": ["train_set/00004"],
        "malformed_row": ["train_set/00005"],
    }
    assert report.usable == {"train_set": 8, "val_set": 7, "test_set": 7}


def test_bad_files_and_settings_are_one_line(tmp_path):
    root = tmp_path / "fer"
    make_fer2013(root, {"Training": 2, "PublicTest": 1, "PrivateTest": 1}, ferplus=True)
    short = (root / "fer2013new.csv").read_text().splitlines()[:-1]
    (root / "fer2013new.csv").write_text("\n".join(short) + "\n")
    with pytest.raises(ConfigError, match=r"has 3 rows .* 4: FERPlus's rows must be FER2013's"):
        load_or_build_index(root, tmp_path / "c", layout="fer2013", options={"labels": "ferplus"})
    (root / "fer2013.csv").write_text("label,pixels\n0,1 2 3\n")
    with pytest.raises(ConfigError, match="has no column 'emotion'"):
        load_or_build_index(root, tmp_path / "d", layout="fer2013")
    with pytest.raises(ConfigError, match=r"data\.labels must be fer2013 or ferplus"):
        AffectNetDataModule(root=str(root), format="fer2013", labels="affectnet").prepare_data()
