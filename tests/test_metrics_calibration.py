"""Expected calibration error against the textbook binning (Guo et al. 2017), written out."""

import itertools

import numpy as np
import pytest
import torch

from fer_lightning.metrics.calibration import (
    ECE_BINS,
    calibration_sums,
    confidence_bins,
    expected_calibration_error,
)
from fer_lightning.metrics.common import unit_weights


def ece_reference(probs: np.ndarray, y: np.ndarray, pred: np.ndarray, bins: int = 15) -> float:
    """`sum_b |B_b| / N * |acc(B_b) - conf(B_b)|` over bins `(lo, hi]` of the top probability."""
    confidence, correct = probs.max(axis=1), pred == y
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return ece


def ece(probs: np.ndarray, y: np.ndarray, pred: np.ndarray) -> float:
    probs_t = torch.as_tensor(probs, dtype=torch.float64)
    correct = torch.as_tensor(pred == y, dtype=torch.float64)
    sums = calibration_sums(probs_t, correct, unit_weights(len(y), probs_t.device))
    return float(expected_calibration_error(sums)[0])


@pytest.mark.parametrize("seed", [0, 1])
def test_ece_equals_the_textbook_binning(seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(8, 0.3), 2000)
    y = rng.integers(0, 8, 2000)
    pred = probs.argmax(axis=1)
    assert ECE_BINS == 15
    assert ece(probs, y, pred) == pytest.approx(ece_reference(probs, y, pred), abs=1e-6)


def test_a_worked_example():
    # Two samples at confidence 0.9 (one right) and two at 0.5 (both right):
    # 2/4 * |0.5 - 0.9| + 2/4 * |1 - 0.5| = 0.2 + 0.25.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5], [0.5, 0.5]])
    y, pred = np.array([0, 1, 0, 0]), np.array([0, 0, 0, 0])
    assert ece(probs, y, pred) == pytest.approx(0.45, abs=1e-12)


def test_bins_are_closed_on_the_right():
    confidence, bins = confidence_bins(torch.tensor([[1.0, 0.0], [1 / 15 + 1e-9, 0.0], [0.0, 0.0]]))
    assert bins.tolist() == [14, 1, 0] and confidence.tolist()[0] == 1.0
