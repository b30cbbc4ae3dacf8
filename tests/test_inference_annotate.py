"""Annotation labels stay inside the picture, in colour-blind-safe colours by expression."""

from __future__ import annotations

import numpy as np
import pytest

from fer_lightning.inference.annotate import PALETTE, draw_faces, label_origin
from fer_lightning.inference.faces import Box
from fer_lightning.inference.predictor import Face
from fer_lightning.labels import EXPRESSION_NAMES


@pytest.mark.parametrize(
    ("box_xy", "expected"),
    [
        ((50, 40), (50, 20)),  # room above the box: the label sits on it
        ((50, 5), (50, 5)),  # none above: inside the box's top
        ((190, 40), (100, 20)),  # at the right edge: moved left to fit
        ((-5, 195), (0, 175)),  # a box starting left of the image: moved right
    ],
)
def test_the_label_band_is_placed_inside_the_image(box_xy, expected):
    assert label_origin(box_xy, (100, 20), (200, 200)) == expected


def test_labels_of_faces_at_every_edge_are_drawn_whole_in_their_expressions_colour():
    image = np.zeros((120, 160, 3), np.uint8)
    probs = np.eye(8)
    faces = [
        Face(Box(120, 0, 40, 40), probs[3], 0.5, -0.5),  # top-right corner
        Face(Box(0, 90, 30, 30), probs[6], -0.1, 0.2),  # bottom-left corner
    ]
    out = draw_faces(image, faces, EXPRESSION_NAMES)
    assert out.shape == image.shape and not image.any()  # drawn on a copy
    for code in (3, 6):
        where = np.all(out == PALETTE[code], axis=2)
        cols = np.nonzero(where)[1]
        # A band wider than the box, so it cannot be the box's outline alone.
        assert cols.max() - cols.min() > 60
    # The top-right face's band was moved left, to end at the right edge.
    band = np.nonzero(np.all(out[:12] == PALETTE[3], axis=2))[1]
    assert band.max() == 159 and band.min() < 120


def test_the_palette_has_a_distinct_colour_for_every_expression():
    assert len(set(PALETTE)) == len(PALETTE) >= len(EXPRESSION_NAMES)
