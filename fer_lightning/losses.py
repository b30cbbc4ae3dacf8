"""The weighted multi-task objective: expression cross-entropy plus valence and arousal regression."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fer_lightning.errors import ConfigError

TASKS = ("expression", "valence", "arousal")


def ccc_loss(pred: Tensor, target: Tensor) -> Tensor:
    """(1 - CCC) / 2: in [0, 1], and unlike MSE it rewards matching the spread of the labels."""
    pred, target = pred.float(), target.float()
    pred_mean, target_mean = pred.mean(), target.mean()
    covariance = ((pred - pred_mean) * (target - target_mean)).mean()
    denominator = pred.var(unbiased=False) + target.var(unbiased=False)
    denominator = denominator + (pred_mean - target_mean) ** 2
    return (1 - 2 * covariance / denominator.clamp_min(1e-8)) / 2


REGRESSION_LOSSES = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "smooth_l1": F.smooth_l1_loss,
    "ccc": ccc_loss,
}


class MultiTaskLoss(nn.Module):
    """`w_e * CE + w_v * reg(valence) + w_a * reg(arousal)`, CE optionally class-weighted.

    The class weights are a buffer filled from the training split at fit time (never typed in, as
    the original's were), so they travel inside every checkpoint.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        num_classes: int = 8,
        regression: str = "mse",
        class_weighted: bool = True,
    ) -> None:
        super().__init__()
        unknown = set(weights) - set(TASKS)
        if unknown or any(float(weights.get(t, 0.0)) < 0 for t in TASKS):
            raise ConfigError(
                f"loss.weights must hold non-negative expression/valence/arousal weights, got "
                f"{dict(weights)}"
            )
        if sum(float(weights.get(t, 0.0)) for t in TASKS) <= 0:
            raise ConfigError("loss.weights are all zero: at least one task must have a weight > 0")
        if regression not in REGRESSION_LOSSES:
            raise ConfigError(
                f"unknown loss.regression '{regression}': choose one of {', '.join(REGRESSION_LOSSES)}"
            )
        self.weights = {t: float(weights.get(t, 0.0)) for t in TASKS}
        self.regression = REGRESSION_LOSSES[regression]
        self.class_weighted = class_weighted
        self.register_buffer("class_weights", torch.ones(num_classes))

    def set_class_weights(self, weights: Tensor) -> None:
        self.class_weights.copy_(torch.as_tensor(weights, dtype=self.class_weights.dtype))

    def forward(
        self, logits: Tensor, va_pred: Tensor, expression: Tensor, va_target: Tensor
    ) -> dict[str, Tensor]:
        class_weights = self.class_weights if self.class_weighted else None
        parts = {
            "expression": F.cross_entropy(logits.float(), expression, weight=class_weights),
            "valence": self.regression(va_pred[:, 0].float(), va_target[:, 0]),
            "arousal": self.regression(va_pred[:, 1].float(), va_target[:, 1]),
        }
        parts["loss"] = sum(self.weights[t] * parts[t] for t in TASKS)
        return parts
