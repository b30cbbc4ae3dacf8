"""The drawn face's geometry follows its labels."""

from __future__ import annotations

import numpy as np

from fer_lightning.data.synthetic import faces


def test_geometry_follows_valence_and_arousal() -> None:
    """Mouth corners rise with valence and the eyes open with arousal, so both are visible."""
    rng = np.random.default_rng(0)

    def shape(code: int, v: float, a: float) -> np.ndarray:
        knobs = faces.expression_knobs(code, v, a, np.random.default_rng(1))
        return faces.face_shape(knobs, rng).landmarks

    def corner_lift(lm: np.ndarray) -> float:
        return float((lm[51, 1] + lm[57, 1]) / 2 - (lm[48, 1] + lm[54, 1]) / 2)

    def eye_open(lm: np.ndarray) -> float:
        return float(lm[40, 1] + lm[41, 1] - lm[37, 1] - lm[38, 1])

    for code in (0, 2, 5, 6):
        lifts = [corner_lift(shape(code, v, 0.0)) for v in (-0.8, 0.0, 0.8)]
        assert lifts[0] < lifts[1] < lifts[2]
        openings = [eye_open(shape(code, 0.0, a)) for a in (-0.8, 0.0, 0.8)]
        assert openings[0] < openings[1] < openings[2]
    assert corner_lift(shape(1, 0.7, 0.3)) > 0 > corner_lift(shape(2, -0.6, -0.3))
