"""Crops aligned by the eyes, and the Haar fallback enlarging small images."""

from __future__ import annotations

import cv2
import numpy as np

from fer_lightning.inference.faces import Box, HaarDetector, crop_face, eye_angle
from tests import face_scenes


def test_an_aligned_crop_turns_the_eyes_level_and_an_unaligned_one_does_not():
    image = np.zeros((200, 200, 3), np.uint8)
    eyes = ((80.0, 90.0), (120.0, 110.0))  # the right eye 20 px lower: turned by 26.6 degrees
    for x, y in eyes:
        cv2.circle(image, (round(x), round(y)), 4, (255, 255, 255), -1)
    box = Box(60, 60, 80, 80, landmarks=(*eyes, (100.0, 120.0), (85.0, 135.0), (115.0, 140.0)))
    assert eye_angle(box) == np.degrees(np.arctan2(20, 40))

    def eye_rows(crop: np.ndarray) -> tuple[float, float]:
        bright = crop[..., 0] > 128
        half = crop.shape[1] // 2
        return tuple(
            float(np.nonzero(bright[:, s])[0].mean()) for s in (slice(0, half), slice(half, None))
        )

    left, right = eye_rows(crop_face(image, box, 96, align=True))
    assert abs(left - right) < 1.5
    left, right = eye_rows(crop_face(image, box, 96))
    assert right - left > 15
    assert eye_angle(Box(0, 0, 10, 10)) == 0.0  # no landmarks (Haar): never turned


def test_haar_enlarges_small_images_to_find_faces_below_its_window():
    photo = face_scenes.astronaut()
    small = cv2.resize(photo.image, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    face = tuple(round(v / 4) for v in photo.faces[0])  # 24 px wide
    assert not HaarDetector(min_size=30).detect(small)
    found = [(b.x, b.y, b.w, b.h) for b in HaarDetector(min_size=16).detect(small)]
    assert any(face_scenes.iou(b, face) >= 0.5 for b in found)
