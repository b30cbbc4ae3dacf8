"""Tiny datasets in the published layouts of RAF-DB, FER2013 (and FERPlus), a manifest and class
folders, drawn from synthetic faces whose expression is the one their label names."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from fer_lightning.data.datamodule import AffectNetDataModule
from fer_lightning.data.synthetic.labels import sample_valence_arousal
from fer_lightning.data.synthetic.render import render_face
from fer_lightning.labels import EXPRESSION_NAMES
from tests.conftest import compose_in, tiny_overrides

SIZE = 32
# Each dataset's own label -> the canonical code the tests expect (typed in, not imported).
RAFDB_CODES = {1: 3, 2: 4, 3: 5, 4: 1, 5: 2, 6: 6, 7: 0}
FER2013_CODES = {0: 6, 1: 5, 2: 4, 3: 1, 4: 2, 5: 3, 6: 0}
FERPLUS_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear"]
FERPLUS_COLUMNS += ["contempt", "unknown", "NF"]
FERPLUS_CODES = {0: 0, 1: 1, 2: 3, 3: 2, 4: 6, 5: 5, 6: 4, 7: 7}


def face(code: int, seed: int, size: int = SIZE) -> np.ndarray:
    """A synthetic face of the canonical expression ``code``, RGB uint8."""
    rng = np.random.default_rng([seed, code])
    valence, arousal = sample_valence_arousal(code, rng)
    return render_face(code, valence, arousal, size, rng)[0]


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes())


def make_rafdb(root: Path, train: int = 21, test: int = 7, images: str = "aligned") -> Path:
    """RAF-DB's layout; labels cycle 1-7 (so ``train_00004.jpg`` is 4, Happiness)."""
    lines = []
    for part, count in (("train", train), ("test", test)):
        for k in range(1, count + 1):
            name, label = f"{part}_{k:05d}.jpg", (k - 1) % 7 + 1
            lines.append(f"{name} {label}")
            file = f"{name[:-4]}_aligned.jpg" if images == "aligned" else name
            write_jpeg(root / "Image" / images / file, face(RAFDB_CODES[label], k))
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


def fer2013_rows(counts: dict[str, int]) -> list[list[str]]:
    """fer2013.csv's rows (``emotion, pixels, Usage``); emotions cycle 0-6 within each usage."""
    rows = []
    for usage, count in counts.items():
        for k in range(count):
            gray = cv2.cvtColor(face(FER2013_CODES[k % 7], len(rows), 48), cv2.COLOR_RGB2GRAY)
            rows.append([str(k % 7), " ".join(map(str, gray.ravel())), usage])
    return rows


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


def make_fer2013(
    root: Path, counts: dict[str, int] | None = None, ferplus: bool = False
) -> list[list[str]]:
    """FER2013's layout (and FERPlus's votes: 7 for the row's emotion, as FERPlus columns, 3 for
    neutral or happiness); returns the rows."""
    rows = fer2013_rows(counts or {"Training": 21, "PublicTest": 7, "PrivateTest": 7})
    write_csv(root / "fer2013.csv", ["emotion", "pixels", "Usage"], rows)
    if ferplus:
        votes = []
        for k, (emotion, _, usage) in enumerate(rows):
            column = FERPLUS_COLUMNS.index(
                ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"][
                    int(emotion)
                ]
            )
            counts_ = [0] * 10
            counts_[column] = 7
            counts_[1 if column == 0 else 0] = 3
            votes.append([usage, f"fer{k:07d}.png", *map(str, counts_)])
        write_csv(root / "fer2013new.csv", ["Usage", "Image name", *FERPLUS_COLUMNS], votes)
    return rows


def make_folders(
    root: Path, per_class: int = 3, parts: tuple[str, ...] = ("train", "test")
) -> Path:
    """Class folders named by FER2013's class names (Angry, Happy, ...), for 7 classes."""
    names = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
    for part in parts:
        for label, name in enumerate(names):
            for k in range(per_class):
                write_jpeg(root / part / name / f"{k}.jpg", face(FER2013_CODES[label], k))
    return root


def make_manifest(root: Path, count: int = 24) -> Path:
    """Images under ``root/faces`` listed in ``root/list.csv``: expressions alternately as codes
    and as names, V/A on even rows only, splits train (most), val and test."""
    rows = []
    for k in range(count):
        code = k % 7
        write_jpeg(root / "faces" / f"{k}.jpg", face(code, k))
        expression = str(code) if k % 2 else EXPRESSION_NAMES[code]
        va = ["0.5", "-0.25"] if k % 2 == 0 else ["", ""]
        split = "test" if k % 6 == 5 else "val" if k % 6 == 4 else "train"
        rows.append([f"faces/{k}.jpg", expression, *va, split])
    write_csv(root / "list.csv", ["path", "expression", "valence", "arousal", "split"], rows)
    return root / "list.csv"


def prepared(root: Path | str, layout: str, **settings) -> AffectNetDataModule:
    """A datamodule over a dataset in ``layout`` at ``root``, set up for fitting: the layout's
    own parts (``protocol=predefined``), tiny images, no worker threads, unless ``settings`` say
    otherwise."""
    options = {"protocol": "predefined", "image_size": 32, "batch_size": 4, "num_workers": 0}
    datamodule = AffectNetDataModule(root=str(root), format=layout, **{**options, **settings})
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def layout_overrides(layout: str, root: Path, *extra: str) -> list[str]:
    """The tiny training overrides of tests/conftest.py for ``data=<layout>`` at ``root``."""
    base = [o for o in tiny_overrides(root) if not o.startswith(("data=", "data.synthetic"))]
    return [f"data={layout}", *base, "data.image_size=32", "model=tnet", *extra]


def trained_predictions(
    monkeypatch: pytest.MonkeyPatch, directory: Path, layout: str, root: Path, *extra: str
) -> pd.DataFrame:
    """predictions.csv of a fast_dev_run training on ``data=<layout>`` at ``root``.

    Figures are drawn but not rendered to PNG (two thirds of the run's time, and not what these
    tests check). The default ``on_nonfinite_loss=stop`` stays: a dataset without valence/arousal
    labels (NaN) must train on its expressions, not stop on a NaN loss.
    """
    from fer_lightning.reports import figures
    from fer_lightning.train import train

    monkeypatch.setattr(figures, "_save", lambda figure, path: path)
    overrides = ["trainer.fast_dev_run=true", "bootstrap.resamples=10"]
    cfg = compose_in(directory, "train", layout_overrides(layout, root, *overrides, *extra))
    train(cfg)
    return pd.read_csv(Path(cfg.paths.output_dir) / "results" / "predictions.csv")
