"""A synthetic split's class counts: AffectNet's proportions, exact totals, no empty class."""

from __future__ import annotations

from fer_lightning.data.synthetic import labels
from fer_lightning.labels import AFFECTNET_TRAIN_COUNTS


def test_class_counts_follow_affectnet() -> None:
    assert labels.class_counts(sum(AFFECTNET_TRAIN_COUNTS)) == list(AFFECTNET_TRAIN_COUNTS)
    # 40 * share = 10.41 18.69 3.54 1.96 0.89 0.53 3.46 0.52: floors, the five largest remainders
    # get one each (10 19 4 2 1 1 3 0), then Contempt, still empty, takes one from Sad, the class
    # furthest above its quota (4 - 3.54).
    assert labels.class_counts(40) == [10, 19, 3, 2, 1, 1, 3, 1]
    for n in range(8, 300):
        counts = labels.class_counts(n)
        assert sum(counts) == n and min(counts) >= 1 and max(counts) == counts[1]
    assert labels.balanced_counts(10) == [2, 2, 1, 1, 1, 1, 1, 1]
