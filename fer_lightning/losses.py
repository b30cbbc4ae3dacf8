"""The multi-task objective: expression cross-entropy plus valence and arousal regression.

Two ways to combine the three task losses: fixed weights (`MultiTaskLoss`, the original project's
0.9/0.05/0.05 and the `equal`/`ccc` groups), or weights learned from each task's uncertainty
(`UncertaintyWeightedLoss`, the `uncertainty` group).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fer_lightning.errors import ConfigError
from fer_lightning.models.multitask import full_precision

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


# c_t of the uncertainty weighting: 1 for the classification likelihood, 1/2 for the Gaussian one.
LIKELIHOOD_SCALES = {"expression": 1.0, "valence": 0.5, "arousal": 0.5}


class MultiTaskLoss(nn.Module):
    """`w_e * CE + w_v * reg(valence) + w_a * reg(arousal)`, CE optionally class-weighted.

    The class weights are a buffer of `num_classes` (the data config's `classes`, passed by the
    loss groups) filled from the training split at fit time (never typed in, as the original's
    were), so they travel inside every checkpoint. `label_smoothing` is CE's own (PyTorch's
    `cross_entropy`: the target is (1 - e) one-hot + e / num_classes uniform).
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        num_classes: int,
        regression: str = "mse",
        class_weighted: bool = True,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"loss.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        unknown = set(weights) - set(TASKS)
        if unknown or any(float(weights.get(t, 0.0)) < 0 for t in TASKS):
            raise ConfigError(
                f"loss.weights must hold non-negative expression/valence/arousal weights, got "
                f"{dict(weights)}"
            )
        if sum(float(weights.get(t, 0.0)) for t in TASKS) <= 0:
            raise ConfigError("loss.weights are all zero: at least one task must have a weight > 0")
        if regression not in REGRESSION_LOSSES:
            choices = ", ".join(REGRESSION_LOSSES)
            raise ConfigError(f"unknown loss.regression '{regression}': choose one of {choices}")
        self.weights = {t: float(weights.get(t, 0.0)) for t in TASKS}
        self.regression = REGRESSION_LOSSES[regression]
        self.class_weighted = class_weighted
        self.register_buffer("class_weights", torch.ones(num_classes))

    def set_class_weights(self, weights: Tensor) -> None:
        self.class_weights.copy_(torch.as_tensor(weights, dtype=self.class_weights.dtype))

    def combine(self, parts: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The total from the per-task losses; subclasses may add entries worth logging."""
        return {"loss": sum(self.weights[t] * parts[t] for t in TASKS)}

    def forward(
        self, logits: Tensor, va_pred: Tensor, expression: Tensor, va_target: Tensor
    ) -> dict[str, Tensor]:
        with full_precision(logits.device.type):  # the losses in float32 under mixed precision
            return self._losses(logits, va_pred, expression, va_target)

    def _losses(
        self, logits: Tensor, va_pred: Tensor, expression: Tensor, va_target: Tensor
    ) -> dict[str, Tensor]:
        class_weights = self.class_weights if self.class_weighted else None
        parts = {
            "expression": F.cross_entropy(
                logits.float(),
                expression,
                weight=class_weights,
                label_smoothing=self.label_smoothing,
            ),
            "valence": self.regression(va_pred[:, 0].float(), va_target[:, 0]),
            "arousal": self.regression(va_pred[:, 1].float(), va_target[:, 1]),
        }
        return {**parts, **self.combine(parts)}


class UncertaintyWeightedLoss(MultiTaskLoss):
    """Task weights learned with the losses (Kendall, Gal & Cipolla, CVPR 2018).

    Each task t has a learnable log-variance s_t (an `nn.Parameter` of this module, so the
    module's optimizer, built from `self.parameters()`, trains it with the network):

        total = sum_t w_t * (c_t * exp(-s_t) * L_t + s_t / 2),  c = 1 for CE, 1/2 for regression

    that is, the Gaussian likelihood for valence and arousal and the softmax-with-temperature
    approximation for the expression, as in the paper. Hand-tuning three ratios becomes learning
    them: a noisy task (large L_t) is down-weighted, and the s_t / 2 term stops every weight from
    collapsing to zero. `weights` is a fixed multiplier per task on top (1 each in the `uncertainty`
    group; 0 drops a task). The total falls below zero once the losses are small: only its gradient
    matters, so compare runs by their task losses and metrics, not by this total.

    The returned `weight_<task>` entries are the current effective weights `w_t * c_t * exp(-s_t)`,
    on the same scale as the fixed ratios, so the module logs how the balance evolves.
    """

    def __init__(self, *args: Any, init_log_var: float = 0.0, **kwargs: Any) -> None:
        """`MultiTaskLoss`'s arguments, and `init_log_var`, every s_t at the start."""
        super().__init__(*args, **kwargs)
        self.log_vars = nn.Parameter(torch.full((len(TASKS),), float(init_log_var)))

    def combine(self, parts: Mapping[str, Tensor]) -> dict[str, Tensor]:
        precision = torch.exp(-self.log_vars)
        combined: dict[str, Tensor] = {}
        total = self.log_vars.new_zeros(())
        for i, task in enumerate(TASKS):
            weight = self.weights[task] * LIKELIHOOD_SCALES[task] * precision[i]
            total = total + weight * parts[task] + self.weights[task] * self.log_vars[i] / 2
            combined[f"weight_{task}"] = weight.detach()
        return {"loss": total, **combined}
