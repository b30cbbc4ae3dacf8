"""Procedural stand-in for AffectNet, written in AffectNet's own on-disk layout.

The real dataset is 120 GB behind a licence, so tests, CI and first-time users train on drawn faces
instead. The drawing is built so that the labels are *in the picture*: the expression decides the
shape of brows, eyes, nose and mouth, and valence and arousal move the geometry continuously (mouth
curvature follows valence; eye and mouth opening follow arousal). A small CNN can therefore learn
all three targets in minutes on a CPU, which is what makes end-to-end checks of the pipeline
meaningful rather than "the loss went down on noise".

Layout, as in section 2 of the design notes::

    root/train_set/images/<id>.jpg
    root/train_set/annotations/<id>_exp.npy  _val.npy  _aro.npy  _lnd.npy
    root/val_set/...                         (same)
    root/synthetic.json                      (written last: its presence means "complete")

Ids are unique across the two splits: train uses ``0 .. train_size-1`` and val continues with
``train_size .. train_size+val_size-1``, as AffectNet's own ids never repeat between splits.

Every byte depends only on the parameters and the seed: each sample draws from its own generator
seeded by ``(seed, split, index)``, so output is reproducible and independent of write order.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.errors import ConfigError

FORMAT_VERSION = 1
MANIFEST = "synthetic.json"
# Present while a generation is in progress; lets a rerun recognise and replace its own leftovers
# without ever deleting a directory it did not write (a real AffectNet copy, say).
PARTIAL_MARKER = "synthetic.partial.json"

CLASS_NAMES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
AFFECTNET_TRAIN_COUNTS = (74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750)

# Where each class sits on the valence/arousal circumplex in AffectNet (roughly the class means).
VA_CENTRES = (
    (0.0, 0.0),
    (0.7, 0.3),
    (-0.6, -0.3),
    (0.2, 0.7),
    (-0.5, 0.7),
    (-0.6, 0.3),
    (-0.6, 0.6),
    (-0.4, 0.2),
)
VA_STD = 0.15

NEUTRAL, HAPPY, SAD, SURPRISE, FEAR, DISGUST, ANGER, CONTEMPT = range(8)
_SPLITS = ("train_set", "val_set")
_SHIFT = 4  # cv2 fixed-point fraction bits: sub-pixel placement keeps small faces smooth
_ONE = 1 << _SHIFT


# ----------------------------------------------------------------------------------------------
# Labels


def class_counts(n: int, weights: Sequence[float] = AFFECTNET_TRAIN_COUNTS) -> list[int]:
    """Split ``n`` samples over the classes in exact proportion to ``weights``.

    Largest-remainder rounding keeps the totals exact and the ratios as close as integers allow;
    ties go to the lower class code. When ``n >= len(weights)`` every class gets at least one
    sample, because a split without Contempt would break per-class metrics and class weights
    downstream: each empty class takes one from the class furthest above its quota.
    """
    total = float(sum(weights))
    quotas = [n * w / total for w in weights]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(weights)), key=lambda k: (-(quotas[k] - counts[k]), k))
    for k in by_remainder[: n - sum(counts)]:
        counts[k] += 1
    if n >= len(weights):
        for k in range(len(weights)):
            if counts[k] == 0:
                donor = max(
                    (j for j in range(len(weights)) if counts[j] > 1),
                    key=lambda j: (counts[j] - quotas[j], -j),
                )
                counts[donor] -= 1
                counts[k] = 1
    return counts


def balanced_counts(n: int, num_classes: int = 8) -> list[int]:
    """Equal share per class; the remainder goes one each to the lowest codes."""
    return [n // num_classes + (1 if k < n % num_classes else 0) for k in range(num_classes)]


def split_labels(split: str, n: int, seed: int) -> np.ndarray:
    """Expression codes of one split in file order: exact counts, shuffled with the seed."""
    counts = class_counts(n) if split == "train_set" else balanced_counts(n)
    labels = np.repeat(np.arange(8), counts)
    return np.random.default_rng([seed, _SPLITS.index(split), 0]).permutation(labels)


def sample_valence_arousal(code: int, rng: np.random.Generator) -> tuple[float, float]:
    """Per-sample valence/arousal around the class centre, rounded as they are stored."""
    v, a = np.clip(np.asarray(VA_CENTRES[code]) + rng.normal(0.0, VA_STD, 2), -1.0, 1.0)
    return round(float(v), 6), round(float(a), 6)


# ----------------------------------------------------------------------------------------------
# Face geometry, in a canonical frame: face centre at the origin, x right, y down, the face's
# half-width is 1. Everything drawn is sampled from the same curves as the 68 landmarks, so the
# landmarks are exactly where the features appear.


@dataclass
class Expression:
    """The continuous knobs the drawing is made of; see ``expression_knobs`` for their meaning."""

    brow_inner: float  # raise of the inner brow ends (up is positive)
    brow_outer: float
    brow_arch: float
    brow_pinch: float  # inner ends drawn towards the midline
    eye_open: float  # upper-lid height above the eye centre
    eye_lower: float  # lower-lid depth below the eye centre
    eye_droop: float  # outer part of the upper lid lowered (sadness)
    mouth_width: float  # half-width
    mouth_lift: tuple[float, float]  # corner lift, image-left and image-right
    mouth_pull: tuple[float, float]  # corners pulled sideways (contempt's one-sided smirk)
    mouth_open: float  # full lip gap at the centre
    mouth_round: float  # exponent of the opening's profile: 2 = oval, larger = stretched box
    mouth_lower_share: float  # share of the gap below the mouth line (a smile's "D" shape)
    lip_raise: float  # upper lip pulled up in the middle (disgust)
    lip_thickness: float
    teeth: bool
    nose_wrinkle: bool
    frown_lines: bool
    smile_lines: float  # strength of the nasolabial folds


def expression_knobs(code: int, v: float, a: float, rng: np.random.Generator) -> Expression:
    """Map (class, valence, arousal) to drawing knobs, with small individual variation.

    Valence moves the mouth corners and arousal the eye and mouth opening for every class, so the
    regression targets stay visible; the class adds the action units that tell apart expressions
    that share a region of the circumplex (sad, disgust, anger and contempt all have low valence).
    """

    def jit(scale: float = 0.012) -> float:
        return float(rng.normal(0.0, scale))

    lift = 0.2 * v
    mouth_open = 0.15 * a
    eye_open = 0.085 + 0.045 * a
    knobs = Expression(
        brow_inner=0.0,
        brow_outer=0.0,
        brow_arch=0.05,
        brow_pinch=0.0,
        eye_open=eye_open,
        eye_lower=0.06,
        eye_droop=0.0,
        mouth_width=0.36,
        mouth_lift=(lift, lift),
        mouth_pull=(0.0, 0.0),
        mouth_open=mouth_open - 0.03,
        mouth_round=3.0,
        mouth_lower_share=0.5,
        lip_raise=0.0,
        lip_thickness=0.06,
        teeth=False,
        nose_wrinkle=False,
        frown_lines=False,
        smile_lines=0.0,
    )
    if code == HAPPY:
        knobs.mouth_width = 0.42 + 0.05 * v
        knobs.mouth_open = 0.02 + 0.15 * a
        knobs.mouth_lower_share = 0.8
        knobs.mouth_round = 2.5
        knobs.eye_open -= 0.02
        knobs.eye_lower = 0.02
        knobs.teeth = True
        knobs.smile_lines = 1.0
    elif code == SAD:
        knobs.brow_inner, knobs.brow_outer, knobs.brow_arch = 0.15, -0.05, 0.0
        knobs.eye_droop = 0.04
        knobs.mouth_width = 0.32
        knobs.mouth_open = -0.1
        knobs.lip_thickness = 0.075
    elif code == SURPRISE:
        knobs.brow_inner, knobs.brow_outer, knobs.brow_arch = 0.1 + 0.1 * a, 0.1 + 0.1 * a, 0.1
        knobs.eye_open += 0.05
        knobs.eye_lower = 0.075
        knobs.mouth_width = 0.2
        knobs.mouth_open = 0.12 + 0.2 * a
        knobs.mouth_round = 2.0
    elif code == FEAR:
        knobs.brow_inner, knobs.brow_outer, knobs.brow_arch = 0.1 + 0.1 * a, 0.02, -0.02
        knobs.brow_pinch = 0.05
        knobs.eye_open += 0.05
        knobs.eye_lower = 0.075
        knobs.mouth_width = 0.46
        knobs.mouth_open = 0.03 + 0.12 * a
        knobs.mouth_round = 6.0
        knobs.teeth = True
    elif code == DISGUST:
        knobs.brow_inner, knobs.brow_outer, knobs.brow_arch = -0.08, -0.03, 0.02
        knobs.eye_open -= 0.03
        knobs.eye_lower = 0.04
        knobs.mouth_open = 0.01 + 0.05 * a
        knobs.lip_raise = 0.07
        knobs.teeth = True
        knobs.nose_wrinkle = True
        knobs.smile_lines = 0.7
    elif code == ANGER:
        knobs.brow_inner, knobs.brow_outer, knobs.brow_arch = -0.16 - 0.05 * a, 0.04, 0.0
        knobs.brow_pinch = 0.04
        knobs.eye_open -= 0.035
        knobs.eye_lower = 0.045
        knobs.mouth_width = 0.3
        knobs.mouth_open = -0.12 + 0.15 * a
        knobs.mouth_round = 5.0
        knobs.lip_thickness = 0.035
        knobs.teeth = True
        knobs.frown_lines = True
    elif code == CONTEMPT:
        raised, other = 0.15 + 0.25 * (1.0 + v) / 2.0, lift - 0.03
        side = int(rng.integers(2))
        knobs.mouth_lift = (raised, other) if side == 0 else (other, raised)
        knobs.mouth_pull = (0.08, 0.0) if side == 0 else (0.0, 0.08)
        knobs.mouth_open = -0.1
        knobs.lip_thickness = 0.05
    elif code != NEUTRAL:
        raise ValueError(f"expression code must be 0-7, got {code}")

    knobs.brow_inner += jit()
    knobs.brow_outer += jit()
    knobs.eye_open = max(0.025, knobs.eye_open + jit(0.008))
    knobs.mouth_width += jit(0.015)
    knobs.mouth_lift = (knobs.mouth_lift[0] + jit(0.008), knobs.mouth_lift[1] + jit(0.008))
    knobs.mouth_open = max(0.0, knobs.mouth_open + jit(0.01))
    knobs.lip_thickness = max(0.025, knobs.lip_thickness + jit(0.006))
    return knobs


@dataclass
class FaceShape:
    """Canonical-frame polygons to draw, plus the 68 landmarks taken from them."""

    landmarks: np.ndarray  # (68, 2)
    outline: np.ndarray  # closed face contour: jaw + forehead
    brows: tuple[np.ndarray, np.ndarray]  # filled polygons
    eyes: tuple[np.ndarray, np.ndarray]  # closed eye-opening polygons
    upper_lids: tuple[np.ndarray, np.ndarray]
    irises: tuple[tuple[np.ndarray, float], tuple[np.ndarray, float]]  # centre, radius
    lips: np.ndarray  # outer lip contour
    mouth_gap: np.ndarray | None  # inner contour when the mouth is open
    teeth: np.ndarray | None
    nose_bridge: np.ndarray
    nose_base: np.ndarray
    lines: list[np.ndarray]  # wrinkles and folds, drawn as thin dark strokes


def _mouth(k: Expression, centre_y: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Upper-outer, upper-inner, lower-inner, lower-outer lip curves, sampled left to right."""
    w = k.mouth_width
    u = np.linspace(-1.0, 1.0, 21)
    lift = np.where(u < 0, k.mouth_lift[0], k.mouth_lift[1])
    pull = np.where(u < 0, k.mouth_pull[0], k.mouth_pull[1])
    line = centre_y - lift * u**2
    profile = np.clip(1.0 - np.abs(u) ** k.mouth_round, 0.0, 1.0) ** (1.0 / k.mouth_round)
    up_gap = k.mouth_open * (1.0 - k.mouth_lower_share) * profile + k.lip_raise * (1.0 - u**2)
    low_gap = k.mouth_open * k.mouth_lower_share * profile
    edge = np.sqrt(1.0 - u**2)
    upper_inner = line - up_gap
    lower_inner = line + low_gap
    upper_outer = upper_inner - k.lip_thickness * edge * (0.8 + 0.4 * np.abs(u))
    lower_outer = lower_inner + 1.25 * k.lip_thickness * edge
    x = (w + pull) * u
    return tuple(np.stack([x, y], 1) for y in (upper_outer, upper_inner, lower_inner, lower_outer))


def face_shape(k: Expression, rng: np.random.Generator) -> FaceShape:
    """Build all curves for one face; identity varies a little (eye spacing, face width)."""
    face_w = 1.0 + rng.normal(0, 0.03)
    eye_dx = 0.4 + rng.normal(0, 0.015)
    eye_y = -0.12 + rng.normal(0, 0.015)
    mouth_y = 0.62 + rng.normal(0, 0.015)

    t = np.linspace(np.pi, 0.0, 17)
    jaw = np.stack([face_w * np.cos(t), -0.15 + 1.28 * np.sin(t)], 1)
    top = np.linspace(0.0, np.pi, 15)[1:-1]
    forehead = np.stack([face_w * np.cos(top), -0.15 - 1.25 * np.sin(top)], 1)
    outline = np.concatenate([jaw, forehead])

    brows, brow_lms = [], []
    s = np.linspace(0.0, 1.0, 9)  # 0 = inner end, 1 = outer end
    for side in (-1.0, 1.0):
        inner_x = 0.12 - k.brow_pinch
        x = side * (inner_x + s * (0.62 - inner_x))
        y = -0.48 - (k.brow_inner * (1 - s) + k.brow_outer * s) - k.brow_arch * 4 * s * (1 - s)
        half = 0.075 * (1.0 - 0.4 * s)
        centre = np.stack([x, y], 1)
        brows.append(np.concatenate([np.stack([x, y - half], 1), np.stack([x, y + half], 1)[::-1]]))
        lm = centre[::2]  # 5 points, inner to outer
        brow_lms.append(lm[::-1] if side < 0 else lm)  # iBUG: left brow runs outer to inner

    eyes, lids, irises, eye_lms = [], [], [], []
    ew = 0.19
    u = np.linspace(-1.0, 1.0, 13)
    for side in (-1.0, 1.0):
        cx = side * eye_dx
        outer = -side * u  # +1 at the outer corner for both eyes
        bump = 1.0 - u**2
        upper = eye_y - k.eye_open * bump**0.7 + k.eye_droop * np.clip(outer, 0, 1) * bump
        lower = eye_y + k.eye_lower * bump
        x = cx + ew * u
        up, lo = np.stack([x, upper], 1), np.stack([x, lower], 1)
        eyes.append(np.concatenate([up, lo[-2:0:-1]]))
        lids.append(up)
        opening = float(upper.min())
        iris_r = 0.085
        iris_y = min(eye_y, opening + iris_r * 0.9)
        irises.append((np.array([cx, iris_y]), iris_r))
        # iBUG eye order: corner, two upper, corner, two lower, clockwise from the image-left corner
        eye_lms.append(np.concatenate([up[[0, 4, 8, 12]], lo[[8, 4]]]))

    upper_outer, upper_inner, lower_inner, lower_outer = _mouth(k, mouth_y)
    outer_lms = np.concatenate(
        [upper_outer[[0, 4, 7, 10, 13, 16, 20]], lower_outer[[16, 13, 10, 7, 4]]]
    )
    inner_lms = np.concatenate([upper_inner[[2, 6, 10, 14, 18]], lower_inner[[14, 10, 6]]])
    lips = np.concatenate([upper_outer, lower_outer[-2:0:-1]])
    is_open = k.mouth_open + k.lip_raise > 0.012
    mouth_gap = np.concatenate([upper_inner, lower_inner[-2:0:-1]]) if is_open else None
    teeth = None
    if is_open and k.teeth:
        depth = np.minimum(lower_inner[:, 1] - upper_inner[:, 1], 0.07)
        teeth = np.concatenate(
            [upper_inner, np.stack([upper_inner[:, 0], upper_inner[:, 1] + depth], 1)[::-1]]
        )

    nose_lift = 0.03 if k.nose_wrinkle else 0.0
    bridge = np.stack([np.zeros(4), np.linspace(-0.3, 0.22 - nose_lift, 4)], 1)
    nx = np.array([-0.17, -0.09, 0.0, 0.09, 0.17])
    nose_base = np.stack([nx, 0.3 - nose_lift + 0.06 * (1 - (nx / 0.17) ** 2)], 1)

    lines = []
    if k.nose_wrinkle:
        for y in (-0.12, -0.04, 0.04):
            xx = np.linspace(-0.11, 0.11, 5)
            lines.append(np.stack([xx, y - 0.03 * (1 - (xx / 0.11) ** 2)], 1))
    if k.frown_lines:
        for x in (-0.05, 0.05):
            lines.append(np.array([[x, -0.42], [x * 0.8, -0.28]]))
    if k.smile_lines > 0:
        for side in (-1.0, 1.0):
            start = np.array([side * 0.23, 0.28 - nose_lift])
            end = upper_outer[0 if side < 0 else -1] + [side * 0.08, 0.02]
            mid = (start + end) / 2 + [side * 0.06 * k.smile_lines, 0]
            lines.append(np.stack([start, mid, end]))
    for side, pull in zip((-1.0, 1.0), k.mouth_pull, strict=True):
        if pull > 0:  # the dimple beside a one-sided smirk
            corner = upper_outer[0 if side < 0 else -1]
            lines.append(
                corner + np.array([[side * 0.05, -0.07], [side * 0.09, 0.0], [side * 0.06, 0.06]])
            )

    landmarks = np.concatenate(
        [
            jaw,
            brow_lms[0],
            brow_lms[1],
            bridge,
            nose_base,
            eye_lms[0],
            eye_lms[1],
            outer_lms,
            inner_lms,
        ]
    )
    return FaceShape(
        landmarks=landmarks,
        outline=outline,
        brows=(brows[0], brows[1]),
        eyes=(eyes[0], eyes[1]),
        upper_lids=(lids[0], lids[1]),
        irises=(irises[0], irises[1]),
        lips=lips,
        mouth_gap=mouth_gap,
        teeth=teeth,
        nose_bridge=bridge,
        nose_base=nose_base,
        lines=lines,
    )


# ----------------------------------------------------------------------------------------------
# Rendering


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


def _encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    # cv2 expects BGR: convert here so the file on disk is a correct RGB JPEG.
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _save_npy(path: Path, value: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, value, allow_pickle=False)


# ----------------------------------------------------------------------------------------------
# Dataset


def _check_params(train_size: object, val_size: object, image_size: object, seed: object) -> None:
    def integer(name: str, value: object, low: int, high: int, hint: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{name} must be an integer, got {value!r}; {hint}")
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}; {hint}")

    integer("train_size", train_size, 1, 10_000_000, "pass e.g. train_size=4000")
    integer("val_size", val_size, 1, 10_000_000, "pass e.g. val_size=800")
    integer("image_size", image_size, 16, 1024, "pass e.g. image_size=64")
    integer("seed", seed, 0, 2**63 - 1, "pass a non-negative integer, e.g. seed=0")


def _params(train_size: int, val_size: int, image_size: int, seed: int) -> dict[str, int]:
    return {
        "format_version": FORMAT_VERSION,
        "train_size": int(train_size),
        "val_size": int(val_size),
        "image_size": int(image_size),
        "seed": int(seed),
    }


def _write_json(path: Path, content: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _clear(root: Path) -> None:
    """Remove a previous synthetic dataset, refusing to touch data this module did not write."""
    ours = (root / MANIFEST).exists() or (root / PARTIAL_MARKER).exists()
    present = [root / s for s in _SPLITS if (root / s).exists()]
    if present and not ours:
        raise ConfigError(
            f"{root} already holds {present[0].name}/ not written by the synthetic generator; "
            "choose an empty directory for root"
        )
    (root / MANIFEST).unlink(missing_ok=True)
    for path in present:
        shutil.rmtree(path)


def write_split(root: Path, split: str, n: int, first_id: int, image_size: int, seed: int) -> None:
    """Write one split's images and annotations (see the module docstring for the layout)."""
    images, annotations = root / split / "images", root / split / "annotations"
    images.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    split_index = _SPLITS.index(split)
    for i, code in enumerate(split_labels(split, n, seed)):
        rng = np.random.default_rng([seed, split_index, 1, i])
        valence, arousal = sample_valence_arousal(int(code), rng)
        img, landmarks = render_face(int(code), valence, arousal, image_size, rng)
        quality = int(rng.integers(60, 96))
        sample_id = str(first_id + i)
        (images / f"{sample_id}.jpg").write_bytes(_encode_jpeg(img, quality))
        _save_npy(annotations / f"{sample_id}_exp.npy", np.array(str(int(code))))
        _save_npy(annotations / f"{sample_id}_val.npy", np.array(f"{valence:.6f}"))
        _save_npy(annotations / f"{sample_id}_aro.npy", np.array(f"{arousal:.6f}"))
        _save_npy(annotations / f"{sample_id}_lnd.npy", landmarks.reshape(-1).astype(np.float32))


def generate(
    root: str | Path, train_size: int, val_size: int, image_size: int = 64, seed: int = 0
) -> Path:
    """Write a synthetic AffectNet under ``root`` and return ``root``.

    A previous synthetic dataset there is replaced; the manifest ``synthetic.json`` is written
    last, so a dataset without it is known to be incomplete.
    """
    _check_params(train_size, val_size, image_size, seed)
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        message = f"cannot create root {root}: {err.strerror}; choose a writable directory"
        raise ConfigError(message) from err
    _clear(root)
    params = _params(train_size, val_size, image_size, seed)
    _write_json(root / PARTIAL_MARKER, params)
    write_split(root, "train_set", train_size, 0, image_size, seed)
    write_split(root, "val_set", val_size, train_size, image_size, seed)
    manifest = {
        **params,
        "generator": "fer_lightning.data.synthetic",
        "classes": list(CLASS_NAMES),
        "train_counts": class_counts(train_size),
        "val_counts": balanced_counts(val_size),
        "val_first_id": train_size,
    }
    _write_json(root / MANIFEST, manifest)
    (root / PARTIAL_MARKER).unlink()
    return root


def read_manifest(root: str | Path) -> dict | None:
    """The manifest of a complete synthetic dataset under ``root``, or None."""
    try:
        return json.loads((Path(root) / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def ensure_synthetic(
    root: str | Path, train_size: int, val_size: int, image_size: int = 64, seed: int = 0
) -> Path:
    """Generate on first use, reuse afterwards: regenerate only if the manifest disagrees."""
    _check_params(train_size, val_size, image_size, seed)
    manifest = read_manifest(root)
    wanted = _params(train_size, val_size, image_size, seed)
    if manifest is not None and all(manifest.get(k) == v for k, v in wanted.items()):
        return Path(root)
    return generate(root, train_size, val_size, image_size, seed)


# ----------------------------------------------------------------------------------------------
# CLI

_CLI_DEFAULTS = {"root": None, "train_size": None, "val_size": None, "image_size": 64, "seed": 0}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fer_lightning.data.synthetic root=DIR train_size=N val_size=M [image_size=S]
    [seed=K]``; a configuration mistake is one line on stderr and exit status 2."""
    from omegaconf import OmegaConf

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        for arg in args:
            if "=" not in arg or arg.startswith("="):
                raise ConfigError(
                    f"expected key=value, got {arg!r}; keys: {', '.join(_CLI_DEFAULTS)}"
                )
        try:
            cli = OmegaConf.to_container(OmegaConf.from_dotlist(args))
        except Exception as err:  # omegaconf/yaml raise several unrelated types for bad syntax
            summary = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"could not parse the arguments ({summary}); use key=value") from err
        unknown = sorted(set(cli) - set(_CLI_DEFAULTS))
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r}; valid keys: {', '.join(_CLI_DEFAULTS)}")
        cfg = {**_CLI_DEFAULTS, **cli}
        if cfg["root"] == "":
            raise ConfigError("root is empty; pass root=DIR, the directory to write the dataset to")
        for key, value in cfg.items():
            if value is None:
                raise ConfigError(
                    f"missing {key}=...; e.g. root=data/synthetic train_size=4000 val_size=800"
                )
        start = time.perf_counter()
        root = generate(
            str(cfg["root"]), cfg["train_size"], cfg["val_size"], cfg["image_size"], cfg["seed"]
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    total = cfg["train_size"] + cfg["val_size"]
    print(
        f"wrote {cfg['train_size']} train + {cfg['val_size']} val images "
        f"({cfg['image_size']}x{cfg['image_size']}) to {root} in {seconds:.1f} s "
        f"({total / seconds:.0f} images/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
