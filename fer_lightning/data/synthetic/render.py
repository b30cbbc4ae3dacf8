"""Drawing a face from its labels: the image and its 68 landmarks in pixels."""

from __future__ import annotations

import math

import cv2
import numpy as np

from fer_lightning.data.synthetic.faces import expression_knobs, face_shape

_SHIFT = 4  # cv2 fixed-point fraction bits: sub-pixel placement keeps small faces smooth
_ONE = 1 << _SHIFT


def _px(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> cv2's fixed-point int32 with ``_SHIFT`` fraction bits."""
    return np.round(points * _ONE).astype(np.int32)


def _skin_tone(rng: np.random.Generator) -> np.ndarray:
    light, dark = np.array([238.0, 206.0, 180.0]), np.array([92.0, 62.0, 44.0])
    t = rng.uniform(0.0, 1.0) ** 1.3
    return (light + t * (dark - light)) * rng.uniform(0.95, 1.05, 3)


def _hair_colour(rng: np.random.Generator) -> np.ndarray:
    palette = np.array(
        [
            [25, 20, 18],
            [60, 40, 25],
            [105, 70, 40],
            [160, 120, 70],
            [200, 170, 110],
            [130, 130, 130],
        ]
    )
    return palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.15)


def render_face(
    code: int, valence: float, arousal: float, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one face; returns the RGB uint8 image and its 68 landmarks in pixels, shape (68, 2).

    Nuisance (skin, pose, background, noise, occlusion) is drawn from ``rng`` after the expression,
    all moderate: the point is a dataset a small CNN learns quickly, not one that is hard.
    """
    knobs = expression_knobs(code, valence, arousal, rng)
    shape = face_shape(knobs, rng)

    scale = 0.37 * size * rng.uniform(0.9, 1.05)
    angle = math.radians(rng.uniform(-12.0, 12.0))
    rot = scale * np.array(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    centre = size * (np.array([0.5, 0.47]) + rng.uniform(-0.06, 0.06, 2))
    landmarks = shape.landmarks @ rot.T + centre
    # Keep every landmark inside the frame, as a face detector's crop would.
    low, high = landmarks.min(0), landmarks.max(0)
    centre += np.maximum(1.0 - low, 0.0) - np.maximum(high - (size - 2.0), 0.0)
    landmarks = shape.landmarks @ rot.T + centre

    def tf(points: np.ndarray) -> np.ndarray:
        return _px(np.asarray(points, dtype=np.float64) @ rot.T + centre)

    def stroke(fraction: float) -> int:
        return max(1, round(fraction * scale))

    aa = cv2.LINE_AA
    skin = _skin_tone(rng)
    hair = _hair_colour(rng)
    brow_colour = np.minimum(hair, skin * 0.45) * 0.8
    lip_colour = skin * np.array([0.82, 0.5, 0.5]) + np.array([30.0, 0.0, 5.0])
    dark_skin = skin * 0.55

    # Background: linear gradient between two colours in a random direction.
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    g = ramp[None, :] * np.float32(math.cos(theta)) + ramp[:, None] * np.float32(math.sin(theta))
    g = np.clip(g + np.float32(0.5), 0.0, 1.0)[..., None]
    img = (g * (c1 - c0).astype(np.float32) + c0.astype(np.float32)).astype(np.uint8)

    def fill(poly: np.ndarray, colour: np.ndarray) -> None:
        cv2.fillPoly(img, [tf(poly)], [float(c) for c in colour], aa, _SHIFT)

    def line(poly: np.ndarray, colour: np.ndarray, width: float, closed: bool = False) -> None:
        cv2.polylines(
            img, [tf(poly)], closed, [float(c) for c in colour], stroke(width), aa, _SHIFT
        )

    ring = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    circle = np.stack([np.cos(ring), np.sin(ring)], 1)
    has_hair = rng.uniform() < 0.85
    if has_hair:
        fill(circle * [1.22, 1.2] + [0, -0.4], hair)
    fill(np.array([[-0.5, 0.6], [0.5, 0.6], [0.6, 2.2], [-0.6, 2.2]]), skin * 0.85)
    for side in (-1.0, 1.0):
        fill(circle * [0.14, 0.26] + [side * abs(shape.outline[0, 0]) * 0.98, -0.08], skin * 0.92)
    fill(shape.outline, skin)
    line(shape.outline, skin * 0.7, 0.02, closed=True)
    if has_hair:
        cut = -1.0 + rng.uniform(-0.1, 0.15)
        top = shape.outline[shape.outline[:, 1] < cut]
        if len(top) >= 3:
            fill(top, hair)

    line(shape.nose_bridge, skin * 0.82, 0.035)
    line(shape.nose_base, dark_skin, 0.05)
    for i in (1, 3):
        fill(circle * [0.04, 0.025] + shape.nose_base[i] - [0, 0.025], dark_skin * 0.7)
    for wrinkle in shape.lines:
        line(wrinkle, dark_skin, 0.035)

    # Eyes: sclera and iris on their own layer, composited through the anti-aliased eye outline so
    # the iris is clipped by the lids.
    eye_layer = np.empty_like(img)
    eye_layer[:] = (238, 236, 230)
    iris_colour = [(70, 45, 25), (40, 90, 140), (70, 100, 60), (30, 25, 20)][rng.integers(4)]
    mask = np.zeros((size, size), np.uint8)
    for eye, (iris_c, iris_r) in zip(shape.eyes, shape.irises, strict=True):
        cv2.fillPoly(mask, [tf(eye)], 255, aa, _SHIFT)
        pts = tf(circle * iris_r + iris_c)
        cv2.fillPoly(eye_layer, [pts], iris_colour, aa, _SHIFT)
        cv2.fillPoly(eye_layer, [tf(circle * iris_r * 0.45 + iris_c)], (10, 10, 10), aa, _SHIFT)
    eye_px = np.concatenate(shape.eyes) @ rot.T + centre
    x0, y0 = np.clip(np.floor(eye_px.min(0)).astype(int) - 1, 0, size)
    x1, y1 = np.clip(np.ceil(eye_px.max(0)).astype(int) + 2, 0, size)
    alpha = mask[y0:y1, x0:x1, None].astype(np.float32) / 255.0
    blend = img[y0:y1, x0:x1] * (1.0 - alpha) + eye_layer[y0:y1, x0:x1] * alpha
    img[y0:y1, x0:x1] = blend.astype(np.uint8)
    for eye, lid in zip(shape.eyes, shape.upper_lids, strict=True):
        line(eye, dark_skin * 0.8, 0.025, closed=True)
        line(lid, brow_colour, 0.05)
    for brow in shape.brows:
        fill(brow, brow_colour)

    fill(shape.lips, lip_colour)
    if shape.mouth_gap is not None:
        fill(shape.mouth_gap, np.array([70.0, 20.0, 25.0]))
        if shape.teeth is not None:
            fill(shape.teeth, np.array([240.0, 238.0, 225.0]))
    mouth_line = shape.landmarks[[48, 60, 61, 62, 63, 64, 54]]
    line(mouth_line, lip_colour * 0.45, 0.03)

    if rng.uniform() < 0.1:
        # Occluder (a hand, a microphone...): a flat patch somewhere over the face.
        half = size * rng.uniform(0.08, 0.15, 2)
        where = landmarks[rng.integers(68)] + rng.normal(0, size * 0.05, 2)
        colour = [float(c) for c in rng.uniform(0, 255, 3)]
        if rng.uniform() < 0.5:
            p0, p1 = _px(where - half), _px(where + half)
            cv2.rectangle(
                img, tuple(int(c) for c in p0), tuple(int(c) for c in p1), colour, -1, aa, _SHIFT
            )
        else:
            cv2.ellipse(
                img,
                tuple(int(c) for c in _px(where)),
                tuple(int(c) for c in _px(half)),
                float(rng.uniform(0, 180)),
                0.0,
                360.0,
                colour,
                -1,
                aa,
                _SHIFT,
            )

    # Lighting and sensor noise (luminance only: a third of the cost of per-channel noise).
    out = img.astype(np.float32)
    out *= np.float32(rng.uniform(0.85, 1.15))
    out += np.float32(rng.uniform(-15, 15))
    out += (rng.standard_normal((size, size), dtype=np.float32) * rng.uniform(0.0, 6.0))[..., None]
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8), landmarks
