"""Paired comparisons of two runs scored on the same samples (docs/metrics.md#comparing-runs).

The bootstrap difference resamples the samples once for both runs, so what the two runs share
(the samples' difficulty) cancels; McNemar's exact test looks only at the samples on which the
runs' predictions disagree in correctness.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from torch import Tensor

from fer_lightning.metrics.bootstrap import (
    DEFAULT_RESAMPLES,
    Scored,
    bootstrap_replicates,
    percentile_interval,
)


def bootstrap_p_value(differences: Tensor) -> float:
    """Two-sided p-value of "no difference" from bootstrap differences: twice the smaller share
    of replicates on either side of 0, each count plus one (so never exactly 0), at most 1."""
    finite = differences[~differences.isnan()]
    below, above = int((finite <= 0).sum()), int((finite >= 0).sum())
    return min(1.0, 2 * (min(below, above) + 1) / (finite.numel() + 1))


def mcnemar_exact(correct_a: Tensor, correct_b: Tensor) -> tuple[int, int, float]:
    """Samples only A gets right, only B gets right, and McNemar's exact two-sided p-value: the
    binomial test of the smaller count among the discordant ones at p = 1/2, in exact arithmetic."""
    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((correct_b & ~correct_a).sum())
    discordant, smaller = only_a + only_b, min(only_a, only_b)
    term, tail = 1, 1  # C(m, 0); sum of C(m, i) for i <= smaller
    for i in range(smaller):
        term = term * (discordant - i) // (i + 1)
        tail += term
    p_value = min(Fraction(1), Fraction(2 * tail, 2**discordant))
    return only_a, only_b, float(p_value)


def paired_rows(
    a: Scored,
    b: Scored,
    values_a: Mapping[str, float],
    values_b: Mapping[str, float],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> list[dict[str, float | str]]:
    """Per metric of `values_a` (unprefixed): both values, B - A, its paired-bootstrap interval
    and p-value; accuracy also gets McNemar's exact p-value."""
    replicates_a, replicates_b = bootstrap_replicates([a, b], resamples, seed)
    only_a, only_b, mcnemar = mcnemar_exact(a.pred == a.expression, b.pred == b.expression)
    rows = []
    for name, value_a in values_a.items():
        differences = replicates_b[name] - replicates_a[name]
        low, high = percentile_interval(differences)
        rows.append(
            {
                "metric": name,
                "a": value_a,
                "b": values_b[name],
                "difference": values_b[name] - value_a,
                "ci_low": low,
                "ci_high": high,
                "p_value": bootstrap_p_value(differences),
                "mcnemar_p": mcnemar if name == "acc" else float("nan"),
                "only_a_correct": only_a if name == "acc" else float("nan"),
                "only_b_correct": only_b if name == "acc" else float("nan"),
            }
        )
    return rows
