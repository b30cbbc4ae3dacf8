"""Face geometry, in a canonical frame: face centre at the origin, x right, y down, the face's
half-width is 1. Everything drawn is sampled from the same curves as the 68 landmarks, so the
landmarks are exactly where the features appear."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer_lightning.labels import ANGER, CONTEMPT, DISGUST, FEAR, HAPPY, NEUTRAL, SAD, SURPRISE

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
