"""Valence/arousal scores: ICC(3,1) against the two-way ANOVA of Shrout & Fleiss 1979 and a worked
example, MAE against sklearn."""

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error

from fer_lightning.metrics.regression import AffectDimensionMetrics

# Shrout & Fleiss 1979, Table 2: 6 targets rated by 4 judges; their ICC(3,1) is 0.71.
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float
)


def icc_3_1_anova(ratings: np.ndarray) -> float:
    """ICC(3,1), two-way mixed, consistency, single rater: `(BMS - EMS) / (BMS + (k - 1) EMS)`
    from the ANOVA of `ratings` [targets, raters], written out as in Shrout & Fleiss 1979."""
    n, k = ratings.shape
    grand = ratings.mean()
    ss_targets = k * ((ratings.mean(axis=1) - grand) ** 2).sum()
    ss_raters = n * ((ratings.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((ratings - grand) ** 2).sum() - ss_targets - ss_raters
    bms, ems = ss_targets / (n - 1), ss_error / ((n - 1) * (k - 1))
    return (bms - ems) / (bms + (k - 1) * ems)


def scores(pred, target) -> dict[str, float]:
    metric = AffectDimensionMetrics()
    metric.update(
        torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(target, dtype=torch.float64)
    )
    return {key: float(value) for key, value in metric.compute().items()}


def test_the_anova_reference_reproduces_shrout_and_fleiss():
    assert round(icc_3_1_anova(SHROUT_FLEISS), 2) == 0.71


def test_icc_of_two_raters_equals_a_worked_example():
    # By hand: target means 1.5, 2, 3.5, 4.5, grand mean 2.875; SS_targets = 2 * 5.6875 = 11.375,
    # SS_raters = 4 * 2 * 0.375^2 = 1.125, SS_total = 12.875, so SS_error = 0.375;
    # BMS = 11.375 / 3, EMS = 0.375 / 3 and ICC(3,1) = (11/3 - 1/8) / (11/3 + 1/8) = 44/47.
    t, v = [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 4.0, 5.0]
    assert icc_3_1_anova(np.array([t, v]).T) == pytest.approx(44 / 47, abs=1e-12)
    assert scores(v, t)["icc"] == pytest.approx(44 / 47, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_icc_and_mae_equal_their_references(seed):
    rng = np.random.default_rng(seed)
    t = rng.uniform(-1, 1, 500)
    v = np.clip(0.7 * t + 0.1 + rng.normal(0, 0.3, 500), -1, 1)
    result = scores(v, t)
    assert result["icc"] == pytest.approx(icc_3_1_anova(np.stack([t, v], axis=1)), abs=1e-6)
    assert result["mae"] == pytest.approx(mean_absolute_error(t, v), abs=1e-6)


def test_icc_is_zero_for_a_constant_prediction_and_for_identical_constants():
    t = np.linspace(-1, 1, 9)
    assert scores(np.full(9, 0.3), t)["icc"] == 0.0
    assert scores(np.full(9, 0.3), np.full(9, 0.3))["icc"] == 0.0
