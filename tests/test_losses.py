"""The multi-task objective: weights, class weighting, the regression choices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_lightning.errors import ConfigError
from fer_lightning.losses import MultiTaskLoss, ccc_loss


def _batch(n: int = 32, classes: int = 8):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(n, classes, generator=generator)
    va_pred = torch.rand(n, 2, generator=generator) * 2 - 1
    expression = torch.randint(0, classes, (n,), generator=generator)
    va_target = torch.rand(n, 2, generator=generator) * 2 - 1
    return logits, va_pred, expression, va_target


def test_total_is_the_weighted_sum_with_class_weighted_ce():
    logits, va_pred, expression, va_target = _batch()
    loss = MultiTaskLoss({"expression": 0.9, "valence": 0.05, "arousal": 0.05})
    class_weights = torch.linspace(0.5, 4.0, 8)
    loss.set_class_weights(class_weights)
    parts = loss(logits, va_pred, expression, va_target)
    ce = F.cross_entropy(logits, expression, weight=class_weights)
    mse_v = F.mse_loss(va_pred[:, 0], va_target[:, 0])
    mse_a = F.mse_loss(va_pred[:, 1], va_target[:, 1])
    assert parts["expression"] == pytest.approx(ce.item(), rel=1e-6)
    assert parts["loss"] == pytest.approx((0.9 * ce + 0.05 * mse_v + 0.05 * mse_a).item(), rel=1e-6)
    unweighted = F.cross_entropy(logits, expression)
    assert abs(parts["expression"].item() - unweighted.item()) > 1e-3


def test_class_weights_travel_in_the_state_dict():
    loss = MultiTaskLoss({"expression": 1.0}, num_classes=7)
    loss.set_class_weights(torch.arange(1.0, 8.0))
    restored = MultiTaskLoss({"expression": 1.0}, num_classes=7)
    restored.load_state_dict(loss.state_dict())
    assert torch.equal(restored.class_weights, torch.arange(1.0, 8.0))


@pytest.mark.parametrize(
    "weights", [{"expression": -0.1, "valence": 1.0}, {"expression": 0.0}, {"expresion": 1.0}]
)
def test_impossible_weights_are_config_errors(weights):
    with pytest.raises(ConfigError, match="loss.weights"):
        MultiTaskLoss(weights)


def test_unknown_regression_is_a_config_error():
    with pytest.raises(ConfigError, match="huber2"):
        MultiTaskLoss({"expression": 1.0}, regression="huber2")


def test_ccc_loss_matches_the_formula():
    rng = np.random.default_rng(1)
    y = rng.uniform(-1, 1, 200)
    p = 0.5 * y + rng.normal(0, 0.2, 200) + 0.1
    ccc = 2 * np.mean((y - y.mean()) * (p - p.mean())) / (y.var() + p.var() + (y.mean() - p.mean()) ** 2)
    got = ccc_loss(torch.tensor(p), torch.tensor(y)).item()
    assert got == pytest.approx((1 - ccc) / 2, abs=1e-6)
    assert ccc_loss(torch.tensor(y), torch.tensor(y)).item() == pytest.approx(0.0, abs=1e-6)
