"""Paired comparisons: McNemar's exact test equals scipy's binomial test on the discordant counts;
a run compared with itself differs by nothing."""

import dataclasses
import math

import pytest
import scipy.stats
import torch

from fer_lightning.metrics.paired import bootstrap_p_value, mcnemar_exact, paired_rows
from tests.test_metrics_bootstrap import scored_batch


@pytest.mark.parametrize(
    ("only_a", "only_b", "both"), [(3, 11, 50), (20, 20, 5), (0, 4, 9), (40, 25, 300)]
)
def test_mcnemar_equals_scipys_exact_binomial_test(only_a, only_b, both):
    correct_a = torch.tensor([True] * only_a + [False] * only_b + [True] * both)
    correct_b = torch.tensor([False] * only_a + [True] * only_b + [True] * both)
    counted_a, counted_b, p_value = mcnemar_exact(correct_a, correct_b)
    assert (counted_a, counted_b) == (only_a, only_b)
    expected = scipy.stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert p_value == pytest.approx(expected, abs=1e-9)


def test_mcnemar_without_discordant_samples_is_one():
    correct = torch.tensor([True, False, True])
    assert mcnemar_exact(correct, correct) == (0, 0, 1.0)


def test_a_run_compared_with_itself():
    scored, values = scored_batch(200, 2)
    rows = paired_rows(scored, scored, values, values, resamples=200, seed=0)
    for row in rows:
        assert row["difference"] == 0.0 and row["ci_low"] == row["ci_high"] == 0.0
        assert row["p_value"] == 1.0
    assert next(row for row in rows if row["metric"] == "acc")["mcnemar_p"] == 1.0


def test_the_bootstrap_p_value_of_a_clear_difference_is_small():
    assert bootstrap_p_value(torch.full((999,), 0.1)) == pytest.approx(2 / 1000)
    assert bootstrap_p_value(torch.linspace(-1, 1, 1001)) == 1.0


def test_the_seed_chooses_the_resamples_and_mcnemar_is_for_accuracy_only():
    a, values_a = scored_batch(300, 5)
    b, values_b = scored_batch(300, 6)
    b = dataclasses.replace(b, expression=a.expression)  # the same samples, another run
    by_seed = {
        seed: paired_rows(a, b, values_a, values_b, resamples=200, seed=seed) for seed in (0, 1)
    }
    default = paired_rows(a, b, values_a, values_b, resamples=200)
    intervals = [
        [(r["ci_low"], r["ci_high"]) for r in rows] for rows in (*by_seed.values(), default)
    ]
    assert intervals[0] != intervals[1] and intervals[2] == intervals[0]
    for row in by_seed[0]:
        discordant = [row[key] for key in ("mcnemar_p", "only_a_correct", "only_b_correct")]
        if row["metric"] == "acc":
            assert all(math.isfinite(value) for value in discordant)
        else:
            assert all(math.isnan(value) for value in discordant), row["metric"]
