"""MTCNN on real photographs: one face each where it is, turned and cut faces, faces from 20 px on
plain and busy backgrounds, and no face in face-free images (tests/face_scenes.py)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fer_lightning.errors import ConfigError
from fer_lightning.inference.detectors import build_detector
from fer_lightning.inference.faces import HaarDetector
from fer_lightning.inference.mtcnn import MtcnnDetector, nms
from fer_lightning.inference.mtcnn_nets import WEIGHT_FILES, installed_weights
from tests import face_scenes
from tests.face_scenes import Scene, iou, needs_weights


@pytest.fixture(scope="module")
def detector() -> MtcnnDetector:
    return MtcnnDetector()


def boxes(detector: MtcnnDetector, scene: Scene) -> list[tuple[int, int, int, int]]:
    return [(b.x, b.y, b.w, b.h) for b in detector.detect(scene.image)]


def recall(detector: MtcnnDetector, scenes: list[Scene]) -> tuple[float, int]:
    """The share of faces found (IoU >= 0.5) and the number of boxes that are no face."""
    found = false = 0
    for scene in scenes:
        found_boxes = boxes(detector, scene)
        hits = [b for b in found_boxes if iou(b, scene.faces[0]) >= 0.5]
        found += bool(hits)
        false += len(found_boxes) - len(hits)
    return found / len(scenes), false


@needs_weights
@pytest.mark.parametrize("photo", [face_scenes.astronaut, face_scenes.grace_hopper])
def test_one_face_in_each_photograph_where_the_face_is(detector, photo):
    scene = photo()
    (found,) = detector.detect(scene.image)
    assert iou((found.x, found.y, found.w, found.h), scene.faces[0]) >= 0.5
    assert found.score > 0.99
    (lx, ly), (rx, ry) = found.landmarks[:2]  # the eyes: inside the box's upper half, left first
    assert found.x < lx < rx < found.x + found.w
    assert found.y < min(ly, ry) < found.y + found.h / 2


@needs_weights
@pytest.mark.parametrize("degrees", [-30, -15, 15, 30])
def test_faces_turned_up_to_30_degrees_are_found(detector, degrees):
    scenes = [face_scenes.rotated(photo, degrees) for photo in face_scenes.photographs()]
    assert recall(detector, scenes) == (1.0, 0)


@needs_weights
@pytest.mark.parametrize("side", ["left", "top"])
def test_faces_cut_by_the_border_are_found_inside_the_image(detector, side):
    for photo in face_scenes.photographs():
        scene = face_scenes.at_border(photo, side)
        (found,) = boxes(detector, scene)
        assert iou(found, scene.faces[0]) >= 0.5
        assert found[0] == 0 if side == "left" else found[1] == 0


@needs_weights
def test_faces_of_20_to_40_pixels_on_plain_and_busy_backgrounds(detector):
    scenes = face_scenes.small_faces()
    assert len(scenes) == 96
    found, false = recall(detector, scenes)
    assert found >= 0.9
    assert false <= 1


@needs_weights
def test_at_most_one_false_face_in_100_face_free_images(detector):
    assert sum(len(detector.detect(image)) for image in face_scenes.face_free(100)) <= 1


@needs_weights
@pytest.mark.slow
def test_at_most_ten_false_faces_in_1000_face_free_images(detector):
    images = face_scenes.face_free(1000, seed=5)
    assert sum(len(detector.detect(image)) for image in images) <= 10


@needs_weights
def test_weights_from_a_named_folder_and_a_bad_folder_is_one_line(tmp_path):
    for name in WEIGHT_FILES:
        shutil.copy(installed_weights() / name, tmp_path / name)
    scene = face_scenes.astronaut()
    named = build_detector({"name": "mtcnn", "weights": str(tmp_path)})
    assert len(named.detect(scene.image)) == 1
    (tmp_path / "onet.pt").write_bytes(b"not a state dict")
    with pytest.raises(ConfigError, match="cannot load MTCNN weights") as caught:
        build_detector({"name": "mtcnn", "weights": str(tmp_path)})
    assert "\n" not in str(caught.value)


def test_auto_falls_back_to_haar_without_weights(monkeypatch, caplog):
    monkeypatch.setattr("fer_lightning.inference.detectors.installed_weights", lambda: None)
    assert isinstance(build_detector({"name": "auto", "weights": None}), HaarDetector)
    assert "using the Haar cascade" in caplog.text
    with pytest.raises(ConfigError, match=r"unknown detector\.name=yolo"):
        build_detector({"name": "yolo"})


def test_nms_keeps_the_best_of_overlapping_boxes():
    found = np.array([[0, 0, 9, 9, 0.8], [1, 1, 10, 10, 0.9], [50, 50, 60, 60, 0.7]], np.float32)
    assert nms(found, 0.5).tolist() == [1, 2]
    inner = np.array([[0, 0, 99, 99, 0.9], [10, 10, 29, 29, 0.95]], np.float32)
    assert nms(inner, 0.5).tolist() == [1, 0]  # a small box inside a big one: IoU is small
    assert nms(inner, 0.5, over_smaller=True).tolist() == [1]
