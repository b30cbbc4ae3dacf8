"""Real photographs that installed packages ship, with their faces' boxes checked by eye, and
scenes made from them: small faces on plain and busy backgrounds, and face-free images (tiles of
sample images without people, and of the photographs away from the face)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import matplotlib.cbook
import numpy as np
import pytest
import skimage.data

from fer_lightning.inference.mtcnn_nets import installed_weights

# (x, y, w, h), brows to chin, checked by eye on the photographs drawn with their box.
ASTRONAUT_FACE = (177, 64, 96, 100)
GRACE_HOPPER_FACE = (178, 120, 175, 205)
# Sample images without a human face (skimage's chelsea and camera have one, a cat's or a man's).
FACE_FREE = (
    *("coffee", "rocket", "coins", "brick", "grass", "gravel", "page", "text", "hubble_deep_field"),
    *("immunohistochemistry", "retina", "moon", "colorwheel", "cell", "clock", "logo"),
)

needs_weights = pytest.mark.skipif(
    installed_weights() is None,
    reason="MTCNN's weights: pip install --no-deps facenet-pytorch==2.6.0 (make install does)",
)


@dataclass(frozen=True)
class Scene:
    """A BGR image and the boxes of the faces in it."""

    image: np.ndarray
    faces: list[tuple[int, int, int, int]]


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def astronaut() -> Scene:
    return Scene(_bgr(skimage.data.astronaut()), [ASTRONAUT_FACE])


def grace_hopper() -> Scene:
    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return Scene(cv2.imread(str(path)), [GRACE_HOPPER_FACE])


def photographs() -> list[Scene]:
    return [astronaut(), grace_hopper()]


def iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def _busy_sources() -> list[np.ndarray]:
    images = [_bgr(getattr(skimage.data, name)()) for name in FACE_FREE]
    # The photographs away from their faces: flags, a shuttle, a suit, a uniform with medals.
    images += [astronaut().image[200:, :], grace_hopper().image[340:, :]]
    return images


def face_free(count: int, side: int = 160, seed: int = 0) -> list[np.ndarray]:
    """`count` tiles of face-free images, each a random square of 1/4 to all of the shorter side,
    resized to `side` pixels."""
    rng = np.random.default_rng(seed)
    sources = _busy_sources()
    tiles = []
    for i in range(count):
        image = sources[i % len(sources)]
        rows, cols = image.shape[:2]
        size = int(rng.integers(min(rows, cols) // 4, min(rows, cols) + 1))
        top, left = int(rng.integers(0, rows - size + 1)), int(rng.integers(0, cols - size + 1))
        tile = image[top : top + size, left : left + size]
        tiles.append(cv2.resize(tile, (side, side), interpolation=cv2.INTER_AREA))
    return tiles


def _head(scene: Scene, face_side: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The photograph's head (the face box grown by half its side each way) at a size where the
    face's box is `face_side` pixels wide, and the face's box in it."""
    x, y, w, h = scene.faces[0]
    left, top = max(0, x - w // 2), max(0, y - h // 2)
    head = scene.image[top : y + h + h // 2, left : x + w + w // 2]
    scale = face_side / w
    small = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    box = (round((x - left) * scale), round((y - top) * scale), face_side, round(h * scale))
    return small, box


def small_faces(side: int = 160, seed: int = 1) -> list[Scene]:
    """Each photograph's face at 20 to 40 px, pasted at random places on plain backgrounds (grey
    levels and colours) and on busy ones (face-free tiles)."""
    rng = np.random.default_rng(seed)
    plain = [np.full((side, side, 3), value, np.uint8) for value in (30, 128, 230)]
    plain += [np.full((side, side, 3), colour, np.uint8) for colour in ((200, 120, 40),)]
    backgrounds = plain + face_free(4, side, seed=seed)
    scenes = []
    for photo in photographs():
        for face_side in (20, 24, 28, 32, 36, 40):
            head, (fx, fy, fw, fh) = _head(photo, face_side)
            for background in backgrounds:
                image = background.copy()
                rows, cols = head.shape[:2]
                top = int(rng.integers(0, side - rows + 1))
                left = int(rng.integers(0, side - cols + 1))
                image[top : top + rows, left : left + cols] = head
                scenes.append(Scene(image, [(left + fx, top + fy, fw, fh)]))
    return scenes


def rotated(scene: Scene, degrees: float) -> Scene:
    """The photograph turned about its face's centre; the face's box stays where it was."""
    x, y, w, h = scene.faces[0]
    matrix = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), degrees, 1.0)
    size = scene.image.shape[1::-1]
    return Scene(
        cv2.warpAffine(scene.image, matrix, size, borderMode=cv2.BORDER_REFLECT), scene.faces
    )


def at_border(scene: Scene, side: str) -> Scene:
    """The photograph cut through its face, so that a fifth of the face is outside the image."""
    x, y, w, h = scene.faces[0]
    if side == "left":
        cut = x + w // 5
        return Scene(scene.image[:, cut:], [(0, y, w - w // 5, h)])
    cut = y + h // 5
    return Scene(scene.image[cut:], [(x, 0, w, h - h // 5)])
