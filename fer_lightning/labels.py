"""AffectNet's label space: expression codes and names, its subsets, and its class counts.

Every other dataset layout is read into this space (see ``fer_lightning/data/formats``), so models,
losses, reports and inference name classes the same way whatever the data was. See docs/data.md.
"""

from __future__ import annotations

# Expression codes 0-7, in AffectNet's order; ``data.classes=7`` keeps the first seven.
EXPRESSION_NAMES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
NEUTRAL, HAPPY, SAD, SURPRISE, FEAR, DISGUST, ANGER, CONTEMPT = range(len(EXPRESSION_NAMES))

# Codes AffectNet's annotators used for images that are not one of the expressions.
NON_EXPRESSION_CODES = {8: "None", 9: "Uncertain", 10: "No-Face"}

# Valence or arousal of a sample whose valence and arousal were not annotated.
NOT_ANNOTATED = -2.0

# AffectNet's two subsets: its training set and its validation set (used as the test set by most
# papers). An index row's ``subset`` is a position in this tuple.
SUBSETS = ("train_set", "val_set")
TRAIN_SET, VAL_SET = range(len(SUBSETS))

# AffectNet's manually annotated training set, images per expression code 0-7: the class balance
# the synthetic stand-in copies, and the original project's class weights.
AFFECTNET_TRAIN_COUNTS = (74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750)
