"""The labels of a synthetic split: how many samples of each class, in which order, and each
sample's valence and arousal."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fer_lightning.labels import AFFECTNET_TRAIN_COUNTS, EXPRESSION_NAMES, SUBSETS, TRAIN_SET

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


def balanced_counts(n: int, num_classes: int = len(EXPRESSION_NAMES)) -> list[int]:
    """Equal share per class; the remainder goes one each to the lowest codes."""
    return [n // num_classes + (1 if k < n % num_classes else 0) for k in range(num_classes)]


def split_labels(split: str, n: int, seed: int) -> np.ndarray:
    """Expression codes of one split in file order: exact counts, shuffled with the seed."""
    subset = SUBSETS.index(split)
    counts = class_counts(n) if subset == TRAIN_SET else balanced_counts(n)
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng([seed, subset, 0]).permutation(labels)


def sample_valence_arousal(code: int, rng: np.random.Generator) -> tuple[float, float]:
    """Per-sample valence/arousal around the class centre, rounded as they are stored."""
    v, a = np.clip(np.asarray(VA_CENTRES[code]) + rng.normal(0.0, VA_STD, 2), -1.0, 1.0)
    return round(float(v), 6), round(float(a), 6)
