"""Other datasets' class names map to AffectNet's codes by name, in one place."""

from __future__ import annotations

import pytest

from fer_lightning.labels import class_codes, code_of


def test_the_published_class_lists_map_to_affectnet_codes():
    # The codes, typed in: Neutral 0, Happy 1, Sad 2, Surprise 3, Fear 4, Disgust 5, Anger 6,
    # Contempt 7.
    fer2013 = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
    assert class_codes(fer2013) == (6, 5, 4, 1, 2, 3, 0)
    rafdb = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
    assert class_codes(rafdb) == (3, 4, 5, 1, 2, 6, 0)
    ferplus = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear"]
    assert class_codes([*ferplus, "contempt"]) == (0, 1, 3, 2, 6, 5, 4, 7)
    assert [code_of(n) for n in (" SURPRISED ", "Disgusted", "fearful", "bored")] == [3, 5, 4, None]


def test_a_name_that_is_no_expression_is_refused():
    with pytest.raises(ValueError, match="bored"):
        class_codes(["Happy", "bored"])
