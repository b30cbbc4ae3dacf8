"""Faces followed across frames: matching by overlap, gaps, new tracks, smoothing; and a video
made from the real photographs gives one track per face and no other box."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fer_lightning.errors import ConfigError
from fer_lightning.inference.faces import Box
from fer_lightning.inference.mtcnn import MtcnnDetector
from fer_lightning.inference.pipeline import run_prediction
from fer_lightning.inference.predictor import Face, Predictor
from fer_lightning.inference.sources import Frame
from fer_lightning.inference.tracks import Tracker, box_iou
from fer_lightning.models import create_model
from tests import face_scenes
from tests.face_scenes import needs_weights


def face(x: int, probs: list[float] = (1.0, 0.0), valence: float = 0.0) -> Face:
    return Face(Box(x, 10, 40, 40), np.array(probs), valence, 0.0)


def frame(index: int, source: str = "clip.avi") -> Frame:
    return Frame(source, index, None, 25.0)


def test_faces_keep_their_track_while_they_move_and_new_faces_start_one():
    tracker = Tracker(min_iou=0.3, max_gap=1, smooth_window=1)
    assert [f.track for f in tracker.update(frame(0), [face(0), face(100)])] == [0, 1]
    # Both moved a little, listed in the other order: matched by overlap, not by position.
    assert [f.track for f in tracker.update(frame(1), [face(105), face(5)])] == [1, 0]
    assert [f.track for f in tracker.update(frame(2), [face(10)])] == [0]  # track 1 unseen once
    assert [f.track for f in tracker.update(frame(3), [face(15), face(105)])] == [0, 1]
    tracker.update(frame(4), [])
    tracker.update(frame(5), [])  # two frames without it: longer than max_gap, track 0 ends
    assert [f.track for f in tracker.update(frame(6), [face(15)])] == [2]
    assert [f.track for f in tracker.update(frame(0, "next.avi"), [face(15)])] == [0]


def test_answers_are_the_mean_over_the_tracks_last_frames():
    tracker = Tracker(smooth_window=3)
    answers = [([1.0, 0.0], 0.9), ([0.0, 1.0], -0.3), ([0.0, 1.0], 0.0), ([0.0, 1.0], 0.3)]
    out = [tracker.update(frame(i), [face(i, p, v)])[0] for i, (p, v) in enumerate(answers)]
    np.testing.assert_allclose(out[1].probs, [0.5, 0.5])
    np.testing.assert_allclose(out[2].probs, [1 / 3, 2 / 3])
    assert out[2].expression == 1
    np.testing.assert_allclose(out[3].probs, [0.0, 1.0])  # the first frame left the window
    assert out[3].valence == pytest.approx(0.0)


def test_impossible_tracking_settings_are_one_line():
    for settings, message in (
        ({"min_iou": 0}, "tracking.min_iou"),
        ({"max_gap": -1}, "tracking.max_gap"),
        ({"smooth_window": 0}, "tracking.smooth_window"),
    ):
        with pytest.raises(ConfigError, match=message):
            Tracker(**settings)
    assert box_iou(Box(0, 0, 10, 10), Box(5, 0, 10, 10)) == pytest.approx(50 / 150)


def two_photo_clip(path: Path, frames: int = 12) -> list[list[tuple[int, int, int, int]]]:
    """A video of the two photographs side by side drifting right; each frame's face boxes."""
    photos = face_scenes.photographs()
    height, width = 300, 640
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12, (width, height))
    truth = []
    for step in range(frames):
        canvas = np.full((height, width, 3), 90, np.uint8)
        faces, left = [], 10 + 2 * step
        for photo in photos:
            scale = 280 / photo.image.shape[0]
            small = cv2.resize(photo.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            canvas[10 : 10 + small.shape[0], left : left + small.shape[1]] = small
            x, y, w, h = photo.faces[0]
            faces.append(
                (left + round(x * scale), 10 + round(y * scale), round(w * scale), round(h * scale))
            )
            left += small.shape[1] + 20
        writer.write(canvas)
        truth.append(faces)
    writer.release()
    return truth


@needs_weights
def test_a_video_of_the_photographs_gives_one_track_per_face_and_no_other_box(tmp_path):
    video = tmp_path / "clip.avi"
    truth = two_photo_clip(video)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = create_model("tnet", image_size=48, head_hidden=0, dropout=0.0)
    predictor = Predictor(net, 48, 8, batch_size=8, device="cpu")
    output = tmp_path / "faces.csv"
    summary = run_prediction([video], predictor, MtcnnDetector(), output, margin=0.25)
    with output.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert summary.frames == len(truth) and summary.faces == 2 * len(truth)
    faces_of_track: dict[str, set[int]] = {}
    for row in rows:
        box = tuple(int(row[k]) for k in "xywh")
        overlaps = [face_scenes.iou(box, f) for f in truth[int(row["frame"])]]
        assert max(overlaps) >= 0.5, row  # no false positive: every box is one of the faces
        faces_of_track.setdefault(row["track"], set()).add(int(np.argmax(overlaps)))
    assert faces_of_track == {"0": {0}, "1": {1}}
