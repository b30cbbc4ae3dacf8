"""predict's batching and bookkeeping, on a real (untrained) network and a stand-in detector:
when frames wait and for how long, what is kept of them, which crops are turned, what is counted
and logged, and the device `auto` picks."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fer_lightning.errors import ConfigError
from fer_lightning.inference.faces import Box, crop_face
from fer_lightning.inference.pipeline import run_prediction
from fer_lightning.inference.predictor import Predictor, predict_frames, resolve_device
from fer_lightning.inference.sources import Frame, Skipped
from fer_lightning.models import create_model

SIZE = 16
# A face whose eyes are 15 degrees off level: aligning turns its crop.
TILTED = Box(8, 8, 32, 32, landmarks=((16.0, 18.0), (32.0, 22.3), (24.0, 28.0)))


def predictor(batch_size: int = 4) -> Predictor:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = create_model("tnet", image_size=SIZE, head_hidden=0, dropout=0.0)
    return Predictor(net, SIZE, 8, batch_size, "cpu")


class Faces:
    """A detector that finds `count` copies of `box` in any image whose corner pixel is white."""

    def __init__(self, count: int = 1, box: Box = TILTED) -> None:
        self.boxes = [box] * count

    def detect(self, bgr: np.ndarray) -> list[Box]:
        return self.boxes if bgr[0, 0, 0] == 255 else []


def image(seed: int, face: bool = True) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    pixels[0, 0] = 255 if face else 0
    return pixels


def frames(count: int, read: list[int], face: bool = True) -> Iterator[Frame]:
    """`count` photos, noting in `read` each one as it is taken."""
    for i in range(count):
        read.append(i)
        yield Frame(f"photo_{i}.png", 0, image(i, face))


@pytest.mark.parametrize(
    ("faces_per_frame", "batch_size", "frames_read"),
    [(2, 4, 2), (1, 3, 3), (0, 3, 3)],
    ids=["a-full-batch-of-crops", "both-at-once", "frames-without-faces"],
)
def test_frames_wait_until_a_batch_of_crops_or_of_frames_is_full(
    faces_per_frame, batch_size, frames_read
):
    read: list[int] = []
    answered = predict_frames(
        frames(10, read), predictor(batch_size), Faces(faces_per_frame), margin=0.25
    )
    first = next(answered)
    assert len(read) == frames_read
    assert first[0].source == "photo_0.png" and len(first[1]) == faces_per_frame


def test_frames_come_back_without_their_images_unless_kept():
    net = predictor()
    dropped = list(predict_frames(frames(5, []), net, Faces(), margin=0.25))
    assert [f.image for f, _ in dropped] == [None] * 5
    kept = list(predict_frames(frames(5, []), net, Faces(), margin=0.25, keep_images=True))
    for i, (frame, _) in enumerate(kept):
        np.testing.assert_array_equal(frame.image, image(i))


def answers(rows: list[dict[str, str]]) -> np.ndarray:
    return np.array([[float(r[f"prob_{k}"]) for k in range(8)] for r in rows])


def test_crops_are_turned_to_level_eyes_only_when_asked(tmp_path):
    net = predictor()
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), image(0))
    crops = {a: crop_face(image(0), TILTED, SIZE, 0.25, align=a)[None] for a in (False, True)}
    expected = {a: net.predict(crop)[0][0] for a, crop in crops.items()}
    assert not np.allclose(expected[False], expected[True], atol=1e-4)

    for align in (None, False, True):
        kwargs = {} if align is None else {"align": align}
        (_, faces), *_ = predict_frames(frames(1, []), net, Faces(), margin=0.25, **kwargs)
        np.testing.assert_allclose(faces[0].probs, expected[bool(align)], atol=1e-6)

        output = tmp_path / f"align_{align}.csv"
        run_prediction([photo], net, Faces(), output, margin=0.25, **kwargs)
        with output.open() as handle:
            rows = list(csv.DictReader(handle))
        np.testing.assert_allclose(answers(rows)[0], expected[bool(align)], atol=1e-6)


def test_a_margin_of_zero_is_the_bare_box_and_a_negative_one_is_refused():
    net = predictor()
    (_, faces), *_ = predict_frames(frames(1, []), net, Faces(), margin=0.0)
    bare = crop_face(image(0), TILTED, SIZE, 0.0)[None]
    np.testing.assert_allclose(faces[0].probs, net.predict(bare)[0][0], atol=1e-6)
    with pytest.raises(ConfigError) as caught:
        next(predict_frames(frames(1, []), net, Faces(), margin=-0.1))
    assert str(caught.value) == "margin must be 0 or more (a fraction of the face box), got -0.1"


def test_a_batch_of_one_is_allowed_and_of_none_refused():
    assert predictor(batch_size=1).batch_size == 1
    with pytest.raises(ConfigError) as caught:
        predictor(batch_size=0)
    assert str(caught.value) == "batch_size must be 1 or more, got 0"


def test_auto_is_the_gpu_when_there_is_one(monkeypatch):
    for available, device in ((True, "cuda"), (False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda available=available: available)
        assert resolve_device("auto") == device
        assert resolve_device("cuda:1") == "cuda:1"


def write_video(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 48))
    for i in range(frames):
        writer.write(image(i, face=False))
    writer.release()
    return path


def test_a_run_counts_and_logs_faces_empty_frames_and_skipped_files(tmp_path, caplog):
    files: list[Path | Skipped] = [Skipped("gone.jpg", "unreadable")]
    for name, face in (("face", True), ("wall_1", False), ("wall_2", False)):
        files.append(tmp_path / f"{name}.png")
        cv2.imwrite(str(files[-1]), image(0, face))
    files.append(write_video(tmp_path / "clip.avi", 3))
    output = tmp_path / "new" / "folder" / "predictions.csv"

    began = time.perf_counter()
    with caplog.at_level(logging.DEBUG, logger="fer_lightning.predict"):
        summary = run_prediction(files, predictor(), Faces(), output, margin=0.25)
    took = time.perf_counter() - began

    assert (summary.files, summary.frames, summary.faces, summary.without_face) == (4, 6, 1, 5)
    assert 0 < summary.seconds <= took
    assert summary.line() == (
        f"1 faces in 6 frames of 4 files (5 frames without a face, 1 files skipped) -> {output}"
    )
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    # An empty photo is worth a line; a video's empty frames only at debug level.
    assert said == [
        (logging.DEBUG, "skipped gone.jpg: unreadable"),
        (logging.INFO, f"no face found in {files[2]} (frame 0)"),
        (logging.INFO, f"no face found in {files[3]} (frame 0)"),
        *((logging.DEBUG, f"no face found in {files[4]} (frame {i})") for i in range(3)),
        (
            logging.WARNING,
            "skipped 1 file(s): image or video that does not decode [unreadable], e.g. gone.jpg",
        ),
    ]
    with output.open() as handle:
        assert [r["source"] for r in csv.DictReader(handle)] == [str(files[1])]
