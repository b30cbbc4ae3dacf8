"""Seed aggregates of a sweep: one row per configuration, mean, std and t-interval over seeds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from fer_lightning.reports.seeds import AGGREGATE_CSV, AGGREGATE_PLOT, sweep_aggregate, t_interval
from fer_lightning.reports.sweep import SUMMARY_CSV

pytest_plugins = ["tests.sweep_fixtures"]

VALENCE = "loss.weights.valence"


def test_three_seeds_of_two_settings_aggregate_to_two_rows(seed_sweep):
    summary = pd.read_csv(seed_sweep / SUMMARY_CSV)
    assert len(summary) == 6 and (summary["status"] == "ok").all()
    aggregate = pd.read_csv(seed_sweep / AGGREGATE_CSV)
    assert len(aggregate) == 2
    assert sorted(aggregate[VALENCE]) == [0.05, 0.2]
    assert (aggregate["n_seeds"] == 3).all()
    assert "seed" not in aggregate.columns
    for metric in ("test/acc", "test/valence_ccc", "test/arousal_icc", "test/ece"):
        mean, low, high = (aggregate[f"{metric}_{s}"] for s in ("mean", "ci_low", "ci_high"))
        assert ((low <= mean) & (mean <= high)).all(), metric
        for _, row in aggregate.iterrows():
            jobs = summary[summary[VALENCE] == row[VALENCE]]
            assert row[f"{metric}_mean"] == pytest.approx(jobs[metric].mean())
    first = json.loads((seed_sweep / summary["dir"][0] / "results" / "metrics.json").read_text())
    assert summary["test/acc"][0] == pytest.approx(first["test/acc"])
    assert (seed_sweep / AGGREGATE_PLOT).stat().st_size > 10_000


def test_the_t_interval_is_scipys():
    values = np.array([0.61, 0.64, 0.58, 0.66])
    mean, std, low, high = t_interval(values)
    expected = scipy.stats.t.interval(0.95, 3, loc=values.mean(), scale=scipy.stats.sem(values))
    assert (mean, std) == pytest.approx((values.mean(), values.std(ddof=1)))
    assert (low, high) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(t_interval(np.array([0.5]))[2])


def test_failed_jobs_are_left_out_and_a_missing_key_is_a_configuration_of_its_own():
    summary = pd.DataFrame(
        {
            "job": [0, 1, 2, 3],
            "status": ["ok", "ok", "failed", "ok"],
            "seed": ["1", "2", "3", "1"],
            "model": ["tnet", "tnet", "tnet", None],
            "test/acc": [0.5, 0.7, np.nan, 0.9],
            "error": ["", "", "boom", ""],
            "dir": ["a", "b", "c", "d"],
        }
    )
    aggregate = sweep_aggregate(summary)
    assert aggregate["model"].tolist() == ["tnet", ""]
    assert aggregate["n_seeds"].tolist() == [2, 1]
    assert aggregate["seeds"].tolist() == ["1,2", "1"]
    assert aggregate["test/acc_mean"].tolist() == pytest.approx([0.6, 0.9])
