"""Bootstrap intervals: resamples of the samples themselves give the suite's values, the strata
keep their sizes, and the 95% interval of a known accuracy covers it about 95% of the time."""

import dataclasses

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


def test_the_seed_chooses_the_resamples_and_defaults_to_0():
    scored, values = scored_batch(300, 4)
    intervals = {
        seed: [(r["ci_low"], r["ci_high"]) for r in interval_rows(scored, values, 200, seed)]
        for seed in (0, 1)
    }
    assert intervals[0] != intervals[1]
    default = [(r["ci_low"], r["ci_high"]) for r in interval_rows(scored, values, 200)]
    assert default == intervals[0]


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


def test_each_replicate_is_the_suite_on_its_resample_drawn_out():
    """A resample's weights [N] count how often it draws each sample: its scores are the suite's
    on the samples repeated that often (one resample draws only samples of one valence, one none
    of a class)."""
    n = 90
    logits, va_pred, expression, va_target = make_batch(n, 8)
    va_target[:, 0] = 0.3  # a value with rounding residue in its moments
    va_target[:3, 0] = torch.tensor([-0.4, 0.1, 0.8])
    generator = torch.Generator().manual_seed(2)
    weights = resample_weights(generator, [n], 3)
    only_ties = torch.randint(0, 3, (n,), generator=generator, dtype=weights.dtype)
    only_ties[:3] = 0
    and_highest = only_ties.clone()
    and_highest[2] = 1  # the one value above the ties: not constant
    no_class_0 = (expression != 0).to(weights.dtype)  # a class no sample of it is drawn
    columns = [weights, and_highest[:, None], only_ties[:, None], no_class_0[:, None]]
    weights = torch.cat(columns, dim=1)
    scored = Scored(expression, logits.argmax(dim=1), logits.softmax(dim=1), va_target, va_pred)
    replicates = replicate_scores(scored, weights, weights)
    for b in range(weights.shape[1]):
        drawn = torch.repeat_interleave(torch.arange(n), weights[:, b].long())
        suite = MultiTaskMetrics(C)
        suite.update(logits[drawn], va_pred[drawn], expression[drawn], va_target[drawn])
        for name, value in suite.compute().items():
            if name in replicates:
                expected = float(value)
                assert float(replicates[name][b]) == pytest.approx(expected, abs=1e-9), (b, name)
    # A constant side's correlations are exactly 0 (regression.py), not rounding residue.
    assert [float(replicates[f"valence_{k}"][-2]) for k in ("pcc", "ccc", "icc")] == [0.0] * 3


def test_the_interval_is_numpys_central_percentile_interval():
    replicates = torch.randn(999, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    expected = np.percentile(replicates.numpy(), [2.5, 97.5])
    assert percentile_interval(replicates) == pytest.approx(tuple(expected), abs=1e-12)


def test_chunked_resampling_gives_every_resample(monkeypatch):
    from fer_lightning.metrics import bootstrap

    scored, _ = scored_batch(50, 9)
    monkeypatch.setattr(bootstrap, "CHUNK_CELLS", 50 * 7)  # chunks of 7 resamples
    (replicates,) = bootstrap_replicates([scored], resamples=20, seed=0)
    assert {name: len(values) for name, values in replicates.items()} == dict.fromkeys(
        replicates, 20
    )


def test_a_dimension_without_labels_leaves_out_only_itself():
    scored, _ = scored_batch(60, 10)
    va_target = scored.va_target.clone()
    va_target[:, 0] = float("nan")
    unlabelled = dataclasses.replace(scored, va_target=va_target)
    ones = torch.ones(scored.size, 1, dtype=torch.float64)
    names = set(replicate_scores(unlabelled, ones, ones))
    assert not [name for name in names if name.startswith("valence")]
    assert {"arousal_ccc", "arousal_rmse"} <= names
