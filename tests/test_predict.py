"""predict on a real photograph, a folder with bad and odd files and a video; earlier outputs not
read back; bad checkpoints refused."""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.data import astronaut

from fer_lightning.errors import ConfigError
from fer_lightning.inference.faces import Box, crop_face
from fer_lightning.inference.predictor import Predictor
from fer_lightning.models import create_model
from fer_lightning.predict import predict
from tests.conftest import (
    assert_refused_in_one_line,
    checkpoint_network,
    crafted_checkpoint,
    decode_plain,
    network_outputs,
    run_module,
)
from tests.data_fixtures import jpeg_header_bomb, within
from tests.face_scenes import ASTRONAUT_FACE, iou, needs_weights


def save_checkpoint(path: Path, name: str = "tnet", image_size: int = 48) -> Path:
    """An untrained checkpoint with the keys a trained one has (plus Lightning's, not needed);
    its weights are the same in every session."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = create_model(name, image_size=image_size, head_hidden=0, dropout=0.2)
    model = {
        "_target_": "fer_lightning.models.create_model",
        "name": name,
        "num_classes": 8,
        "pretrained": False,
        "image_size": image_size,
        "va_activation": "tanh",
        "head_hidden": 0,
        "dropout": 0.2,
    }
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "fer_config": {"model": model, "data": {"image_size": image_size, "classes": 8}},
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tnet.ckpt")


@pytest.fixture(scope="module")
def astronaut_bgr() -> np.ndarray:
    return cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def astronaut_jpg(tmp_path_factory: pytest.TempPathFactory, astronaut_bgr: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("photos") / "astronaut.jpg"
    cv2.imwrite(str(path), astronaut_bgr)
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@needs_weights  # the cascade also finds a "face" on the suit
def test_finds_the_astronauts_face_and_writes_one_row(
    compose_config, checkpoint, astronaut_jpg, tmp_path
):
    cfg = compose_config(
        "predict", [f"ckpt_path={checkpoint}", f"input={astronaut_jpg}", "annotate=true"]
    )
    summary = predict(cfg)

    rows = read_rows(Path(cfg.output))
    assert len(rows) == 1
    row = rows[0]
    header = Path(cfg.output).read_text().splitlines()[0]
    assert (
        header
        == "source,frame,x,y,w,h,expression,valence,arousal,"
        + ",".join(f"prob_{k}" for k in range(8))
        + ",track"
    )
    assert row["track"] == "0"
    assert row["source"] == str(astronaut_jpg)
    assert row["frame"] == "0"
    probs = [float(row[f"prob_{k}"]) for k in range(8)]
    assert sum(probs) == pytest.approx(1, abs=1e-5)
    assert int(row["expression"]) == int(np.argmax(probs))
    assert -1 <= float(row["valence"]) <= 1
    assert -1 <= float(row["arousal"]) <= 1
    assert iou(tuple(int(row[k]) for k in "xywh"), ASTRONAUT_FACE) > 0.6
    assert (summary.faces, summary.without_face) == (1, 0)
    assert summary.faces_per_second > 0
    assert (Path(cfg.annotated_dir) / "astronaut.jpg").is_file()


def assert_rows_are_the_network_on_their_crops(
    rows: list[dict[str, str]], crops: list[np.ndarray], checkpoint: Path
) -> None:
    """Every CSV column of every row equals the checkpoint's network run by the test on its crop."""
    probs, va = network_outputs(checkpoint_network(checkpoint), np.stack(crops))
    for row, p, (valence, arousal) in zip(rows, probs, va, strict=True):
        got = [float(row[f"prob_{k}"]) for k in range(8)]
        np.testing.assert_allclose(got, p, atol=1e-5, err_msg=row["source"])
        assert int(row["expression"]) == int(p.argmax()), row["source"]
        assert float(row["valence"]) == pytest.approx(valence, abs=1e-5), row["source"]
        assert float(row["arousal"]) == pytest.approx(arousal, abs=1e-5), row["source"]


def test_each_row_is_the_network_on_its_crop(compose_config, checkpoint, astronaut_jpg, tmp_path):
    folder = tmp_path / "crops"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(6):  # already cut faces at the network's input size: the crop is the image
        image = cv2.GaussianBlur(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), (0, 0), 1)
        cv2.imwrite(str(folder / f"face_{i}.png"), image)
    cfg = compose_config(
        "predict",
        [f"ckpt_path={checkpoint}", f"input={folder}", "detect_faces=false", "batch_size=4"],
    )
    predict(cfg)
    rows = sorted(read_rows(Path(cfg.output)), key=lambda row: row["source"])
    assert [Path(row["source"]).name for row in rows] == [f"face_{i}.png" for i in range(6)]
    assert all([row[k] for k in "xywh"] == ["0", "0", "48", "48"] for row in rows)
    crops = [decode_plain(row["source"], 48) for row in rows]
    assert_rows_are_the_network_on_their_crops(rows, crops, checkpoint)
    # Valence and arousal far enough apart that writing one for the other shows.
    assert max(abs(float(row["valence"]) - float(row["arousal"])) for row in rows) > 1e-3

    # Detected faces (the photograph twice, side by side): the boxes OpenCV's cascade finds, and
    # each row the network on the crop around its box, with the configured margin.
    pair = tmp_path / "pair.png"
    cv2.imwrite(str(pair), np.hstack([cv2.imread(str(astronaut_jpg))] * 2))
    haar = ["detector.name=haar", "detector.min_size=30"]  # the cascade's window and more
    cfg = compose_config("predict", [f"ckpt_path={checkpoint}", f"input={pair}", *haar])
    predict(cfg)
    rows = read_rows(Path(cfg.output))
    boxes = [Box(*(int(row[k]) for k in "xywh")) for row in rows]
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    found = cascade.detectMultiScale(
        cv2.cvtColor(cv2.imread(str(pair)), cv2.COLOR_BGR2GRAY),
        scaleFactor=cfg.detector.scale_factor,
        minNeighbors=cfg.detector.min_neighbors,
        minSize=(cfg.detector.min_size, cfg.detector.min_size),
    )
    assert len(boxes) == 2
    assert [row["track"] for row in rows] == ["0", "1"]  # in a photo each face is its own track
    assert [(b.x, b.y, b.w, b.h) for b in boxes] == sorted(tuple(map(int, f)) for f in found)
    image = cv2.imread(str(pair))
    crops = [crop_face(image, box, 48, margin=cfg.margin) for box in boxes]
    assert_rows_are_the_network_on_their_crops(rows, crops, checkpoint)


def test_crops_are_rgb_square_and_padded_black_at_the_border():
    blue_bgr = np.zeros((100, 100, 3), np.uint8)
    blue_bgr[..., 0] = 255
    crop = crop_face(blue_bgr, Box(0, 0, 40, 40), size=30, margin=0.25)  # 60 px square from -10
    assert crop.shape == (30, 30, 3)
    assert crop[15, 15].tolist() == [0, 0, 255]  # RGB: blue last
    assert crop[0, 0].tolist() == [0, 0, 0]


def test_an_image_without_a_face_is_counted_not_fatal(compose_config, checkpoint, tmp_path):
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 128, np.uint8))
    cfg = compose_config("predict", [f"ckpt_path={checkpoint}", f"input={blank}"])
    summary = predict(cfg)
    assert (summary.frames, summary.faces, summary.without_face) == (1, 0, 1)
    assert read_rows(Path(cfg.output)) == []


def test_a_folder_is_predicted_in_batches_and_bad_files_are_skipped(
    compose_config, checkpoint, astronaut_bgr, tmp_path
):
    folder = tmp_path / "faces"
    (folder / "more").mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = []
    for i in range(20):  # face crops of different sizes and offsets
        top, left = 40 + i, 150 + i
        crop = astronaut_bgr[top : top + 140, left : left + 140 - i]
        images.append(folder / f"face_{i:02d}.jpg")
        cv2.imwrite(str(images[-1]), cv2.resize(crop, (40 + i, 40)))
    for i in range(80):
        images.append(folder / "more" / f"noise_{i:02d}.png")
        cv2.imwrite(str(images[-1]), rng.integers(0, 256, (32, 24, 3), dtype=np.uint8))
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(100))
    broken_video = folder / "broken.mp4"
    broken_video.write_bytes(bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    notes = folder / "notes.txt"
    notes.write_text("not an image\n")

    cfg = compose_config(
        "predict",
        [f"ckpt_path={checkpoint}", f"input={folder}", "detect_faces=false", "batch_size=16"],
    )
    summary = predict(cfg)

    rows = read_rows(Path(cfg.output))
    assert sorted(r["source"] for r in rows) == sorted(map(str, images))
    assert summary.batches == 7  # ceil(100 / 16) forward passes, not one per image
    assert summary.skipped == {
        "unreadable": [str(broken_video), str(corrupt)],
        "unsupported": [str(notes)],
    }
    assert (summary.files, summary.frames, summary.faces) == (100, 100, 100)
    noise = next(r for r in rows if r["source"].endswith("noise_00.png"))
    assert [noise[k] for k in "xywh"] == ["0", "0", "24", "32"]  # the whole image is the face


def test_a_video_gives_rows_with_frame_numbers(compose_config, checkpoint, astronaut_bgr, tmp_path):
    video = tmp_path / "clip.avi"
    frame = cv2.resize(astronaut_bgr, (256, 256), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    assert writer.isOpened()
    for _ in range(10):
        writer.write(frame)
    writer.release()

    cfg = compose_config(
        "predict",
        [f"ckpt_path={checkpoint}", f"input={video}", "video_stride=3", "annotate=true"],
    )
    summary = predict(cfg)

    rows = read_rows(Path(cfg.output))
    assert [int(r["frame"]) for r in rows] == [0, 3, 6, 9]
    assert {r["source"] for r in rows} == {str(video)}
    assert summary.files == 1
    assert {r["track"] for r in rows} == {"0"}
    annotated = cv2.VideoCapture(str(Path(cfg.annotated_dir) / "clip.avi"))
    # The source's rate, each of the 4 annotated frames held for the 3 it stands for.
    assert annotated.get(cv2.CAP_PROP_FPS) == pytest.approx(10)
    assert annotated.get(cv2.CAP_PROP_FRAME_COUNT) == 12
    annotated.release()


class _Payload:
    """Pickles to a call of os.system: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_an_untrusted_checkpoint_is_refused_without_running_its_code(compose_config, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "fer_config": _Payload(marker)}, evil)
    cfg = compose_config("predict", [f"ckpt_path={evil}", f"input={tmp_path}"])
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        predict(cfg)
    assert not marker.exists()


def test_a_missing_input_is_a_one_line_error(compose_config, checkpoint, tmp_path):
    cfg = compose_config("predict", [f"ckpt_path={checkpoint}", f"input={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match="does not exist") as caught:
        predict(cfg)
    assert "\n" not in str(caught.value)


def test_the_command_line_writes_the_csv_and_reports_throughput(
    checkpoint, astronaut_jpg, tmp_path
):
    run = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fer_lightning.predict",
            f"ckpt_path={checkpoint}",
            f"input={astronaut_jpg}",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "faces/s" in result.stdout + result.stderr
    assert len(read_rows(run / "predictions.csv")) == 1


def test_odd_files_are_counted_per_kind_and_earlier_outputs_are_not_read_back(
    compose_config, checkpoint, tmp_path, caplog
):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(3)
    good = [folder / f"face_{i}.png" for i in range(3)]
    for path in good:
        cv2.imwrite(str(path), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    (folder / "album.jpg").mkdir()
    os.mkfifo(folder / "pipe.jpg")
    (folder / "gone.jpg").symlink_to(folder / "deleted.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "again").symlink_to(folder)  # a folder link back up the tree
    (folder / "bomb.jpg").write_bytes(jpeg_header_bomb(30000, 30000))
    (folder / "empty.png").write_bytes(b"")
    overrides = [
        f"ckpt_path={checkpoint}",
        f"input={folder}",
        "detect_faces=false",
        f"output={folder / 'out' / 'faces.csv'}",
        f"annotated_dir={folder / 'drawn'}",
        "annotate=true",
    ]
    with caplog.at_level(logging.WARNING, logger="fer_lightning.predict"):
        summary = within(120, lambda: predict(compose_config("predict", overrides)))
    assert {kind: len(sources) for kind, sources in summary.skipped.items()} == {
        "not_a_regular_file": 2,
        "broken_link": 1,
        "link_loop": 2,
        "too_many_pixels": 1,
        "empty_file": 1,
    }
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped")]
    assert len(lines) == 5  # one per kind, with the count and an example
    loops = "skipped 2 file(s): symbolic link that loops back on itself [link_loop], e.g. "
    assert loops + str(folder / "again") in lines
    first = read_rows(folder / "out" / "faces.csv")
    assert sorted(r["source"] for r in first) == list(map(str, good))

    # Again, with the CSV and annotated copies of the first run inside the folder, and copies of
    # an earlier run elsewhere: none of them is read back.
    (folder / "drawn").rename(folder / "old-drawn")
    second = predict(compose_config("predict", overrides))
    assert read_rows(folder / "out" / "faces.csv") == first
    assert "unsupported" not in second.skipped  # faces.csv was not even looked at


@pytest.mark.parametrize("node", ["model", "data"])
def test_a_checkpoint_naming_code_in_its_config_is_refused_and_runs_nothing(
    trained_run, astronaut_jpg, tmp_path, node
):
    crafted, victim = crafted_checkpoint(trained_run, tmp_path, node)
    result = run_module(
        "predict",
        f"ckpt_path={crafted}",
        f"input={astronaut_jpg}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert_refused_in_one_line(result, victim)
    assert not (tmp_path / "run" / "predictions.csv").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_classes": "8"}, "num_classes = '8' should be of type int"),
        ({"image_size": True}, "image_size = True should be of type int"),
        ({"name": "os.system"}, "unknown model 'os.system'"),
        ({"layers": 3}, "model.layers is not a setting"),
        ({"num_classes": 7}, "weights do not fit the tnet network"),
    ],
)
def test_a_stored_model_config_of_wrong_values_is_one_line(checkpoint, tmp_path, change, message):
    stored = torch.load(checkpoint, weights_only=True)
    stored["fer_config"]["model"].update(change)
    torch.save(stored, tmp_path / "changed.ckpt")
    with pytest.raises(ConfigError, match=message) as caught:
        Predictor.from_checkpoint(tmp_path / "changed.ckpt", batch_size=1, device="cpu")
    assert "\n" not in str(caught.value)
