"""Bootstrap intervals: resamples of the samples themselves give the suite's values, the strata
keep their sizes, and the 95% interval of a known accuracy covers it about 95% of the time."""

import numpy as np
import pytest
import torch

from fer_lightning.metrics.bootstrap import (
    Scored,
    bootstrap_replicates,
    interval_rows,
    percentile_interval,
    replicate_scores,
    resample_weights,
)
from fer_lightning.metrics.suite import MultiTaskMetrics
from tests.test_metrics_suite import C, make_batch


def scored_batch(n: int, seed: int) -> tuple[Scored, dict[str, float]]:
    logits, va_pred, expression, va_target = make_batch(n, seed)
    metrics = MultiTaskMetrics(C)
    metrics.update(logits, va_pred, expression, va_target)
    values = {k: float(v) for k, v in metrics.compute().items()}
    probs = logits.softmax(dim=1)
    return Scored(expression, logits.argmax(dim=1), probs, va_target, va_pred), values


def test_the_unresampled_set_gives_the_suites_values():
    scored, values = scored_batch(300, 0)
    ones = torch.ones(scored.size, 1, dtype=torch.float64)
    replicate = replicate_scores(scored, ones, ones)
    assert set(replicate) == set(values)
    for name, value in values.items():
        assert float(replicate[name][0]) == pytest.approx(value, abs=1e-9), name


def test_resamples_keep_each_stratum_and_are_seeded():
    weights = resample_weights(torch.Generator().manual_seed(3), [5, 0, 7], 50)
    assert weights.shape == (12, 50)
    assert (weights[:5].sum(dim=0) == 5).all() and (weights[5:].sum(dim=0) == 7).all()
    again = resample_weights(torch.Generator().manual_seed(3), [5, 0, 7], 50)
    assert torch.equal(weights, again)


def test_intervals_hold_the_value_and_are_reproducible():
    scored, values = scored_batch(400, 1)
    rows = interval_rows(scored, values, resamples=300, seed=5)
    assert [row["metric"] for row in rows] == list(values)
    for row in rows:
        assert row["n"] == 400
        assert row["ci_low"] <= row["ci_high"]
    inside = [r["ci_low"] - 1e-9 <= r["value"] <= r["ci_high"] + 1e-9 for r in rows]
    assert np.mean(inside) > 0.9
    assert rows == interval_rows(scored, values, resamples=300, seed=5)


def test_a_known_accuracy_is_covered_about_95_percent_of_the_time():
    """200 simulated test sets, each of 300 samples predicted right with probability 0.75."""
    truth, sets, n = 0.75, 200, 300
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(sets):
        expression = torch.from_numpy(rng.integers(0, 3, n))
        right = torch.from_numpy(rng.random(n) < truth)
        pred = torch.where(right, expression, (expression + 1) % 3)
        probs = torch.nn.functional.one_hot(pred, 3).double() * 0.5 + 0.5 / 3
        va = torch.zeros(n, 2, dtype=torch.float64)
        (replicates,) = bootstrap_replicates(
            [Scored(expression, pred, probs, va, va)], resamples=400, seed=int(rng.integers(1e9))
        )
        low, high = percentile_interval(replicates["acc"])
        covered += low <= truth <= high
    assert 0.90 <= covered / sets <= 0.99
