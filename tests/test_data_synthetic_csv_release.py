"""The .npy layout rewritten as AffectNet's CSV release: the published columns, with or without
the header row, each face at its box in a larger photograph, landmarks moved with it."""

from __future__ import annotations

import csv

import cv2
import numpy as np

from fer_lightning.data.formats.affectnet_csv import COLUMNS, IMAGES, LISTS
from fer_lightning.data.synthetic.csv_release import write_csv_release
from fer_lightning.data.synthetic.writer import ensure_synthetic


def test_faces_land_at_their_boxes_with_their_labels_in_the_published_columns(tmp_path):
    source = ensure_synthetic(tmp_path / "npy", train_size=6, val_size=3, image_size=32)
    root = tmp_path / "csv"
    written = write_csv_release(source, root, context=2.5, header=(True, False))
    assert len(written) == 9
    training, validation = (
        list(csv.reader((root / LISTS / name).read_text().splitlines()))
        for name in ("training.csv", "validation.csv")
    )
    assert tuple(training[0]) == COLUMNS and len(training) == 7
    assert len(validation) == 3 and all(len(row) == len(COLUMNS) for row in validation)
    for row in training[1:]:
        sample_id = row[0].split("/")[1].removesuffix(".png")
        image, box = written[f"train_set/{sample_id}"]
        assert image == f"{IMAGES}/{row[0]}" and box == tuple(int(v) for v in row[1:5])
        x, y, w, h = box
        photo = cv2.imread(str(root / image))
        face = cv2.imread(str(source / "train_set" / "images" / f"{sample_id}.jpg"))
        assert photo.shape == (80, 80, 3) and np.array_equal(photo[y : y + h, x : x + w], face)
        annotations = source / "train_set" / "annotations"
        assert int(row[6]) == int(np.load(annotations / f"{sample_id}_exp.npy").item())
        assert float(row[7]) == float(np.load(annotations / f"{sample_id}_val.npy").item())
        landmarks = np.array(row[5].split(";"), dtype=float).reshape(-1, 2)
        moved = np.load(annotations / f"{sample_id}_lnd.npy").reshape(-1, 2) + np.array([x, y])
        np.testing.assert_allclose(landmarks, moved, atol=0.01)
