"""AffectNet's label space: expression codes and names, the subsets, and its class counts.

Every other dataset layout is read into this space (see ``fer_lightning/data/formats``): each
declares its classes by name, and `class_codes` maps them to these codes, so models, losses,
reports and inference name classes the same way whatever the data was. See docs/data.md.
"""

from __future__ import annotations

from collections.abc import Sequence

# Expression codes 0-7, in AffectNet's order; ``data.classes=7`` keeps the first seven.
EXPRESSION_NAMES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
NEUTRAL, HAPPY, SAD, SURPRISE, FEAR, DISGUST, ANGER, CONTEMPT = range(len(EXPRESSION_NAMES))

# Codes AffectNet's annotators used for images that are not one of the expressions.
NON_EXPRESSION_CODES = {8: "None", 9: "Uncertain", 10: "No-Face"}

# Valence or arousal of a sample whose valence and arousal were not annotated.
NOT_ANNOTATED = -2.0

# The parts a dataset can come in: AffectNet has the first two (its validation set is the test set
# of most papers); FER2013 has all three; RAF-DB has a training and a test part. An index row's
# ``subset`` is a position in this tuple.
SUBSETS = ("train_set", "val_set", "test_set")
TRAIN_SET, VAL_SET, TEST_SET = range(len(SUBSETS))
AFFECTNET_SUBSETS = SUBSETS[:2]

# What other datasets call the expressions (lower case), by canonical code: FER2013's "Angry",
# RAF-DB's "Happiness", FERPlus's "sadness", the adjectives of class-folder redistributions.
_SYNONYMS = {
    NEUTRAL: ("neutral", "neutrality"),
    HAPPY: ("happy", "happiness", "joy"),
    SAD: ("sad", "sadness"),
    SURPRISE: ("surprise", "surprised"),
    FEAR: ("fear", "fearful", "afraid", "scared"),
    DISGUST: ("disgust", "disgusted"),
    ANGER: ("anger", "angry"),
    CONTEMPT: ("contempt", "contemptuous"),
}
_CODE_OF_NAME = {name: code for code, names in _SYNONYMS.items() for name in names}


def code_of(name: str) -> int | None:
    """The canonical code of a class name (any case, surrounding blanks ignored), None if it names
    no expression."""
    return _CODE_OF_NAME.get(name.strip().lower())


def class_codes(names: Sequence[str]) -> tuple[int, ...]:
    """The canonical codes of a dataset's classes, given in the dataset's own order (its label 0
    or 1 first): the one place where another dataset's labels become AffectNet's codes."""
    unknown = [name for name in names if code_of(name) is None]
    if unknown:
        raise ValueError(f"class names that name no expression: {unknown}")
    return tuple(_CODE_OF_NAME[name.strip().lower()] for name in names)


# AffectNet's manually annotated training set, images per expression code 0-7: the class balance
# the synthetic stand-in copies, and the original project's class weights.
AFFECTNET_TRAIN_COUNTS = (74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750)
