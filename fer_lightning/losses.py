"""The multi-task objective: expression cross-entropy plus valence and arousal regression.

Two ways to combine the three task losses: fixed weights (`MultiTaskLoss`, the original project's
0.9/0.05/0.05 and the `equal`/`ccc` groups), or weights learned from each task's uncertainty
(`UncertaintyWeightedLoss`, the `uncertainty` group).

Masked tasks: a sample whose valence and arousal were not annotated (RAF-DB, FER2013, a manifest
row without them) carries NaN there (docs/data.md). Each regression averages over the labelled
samples of the batch only, and a batch without any gives its V/A head exactly zero gradient. The
masks are arithmetic, not boolean indexing, so the loss never waits for the device to learn how
many samples were labelled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fer_lightning.errors import ConfigError
from fer_lightning.models.multitask import full_precision

TASKS = ("expression", "valence", "arousal")


def ccc_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """(1 - CCC) / 2: in [0, 1], and unlike MSE it rewards matching the spread of the labels.

    With `weight` (1 for a labelled sample, 0 for an unlabelled one) the moments are those of the
    labelled samples; with none labelled the loss is 0.
    """
    pred, target = pred.float(), target.float()
    weight = torch.ones_like(pred) if weight is None else weight
    count = weight.sum()
    n = count.clamp_min(1)

    def mean(values: Tensor) -> Tensor:
        return (weight * values).sum() / n

    pred_mean, target_mean = mean(pred), mean(target)
    covariance = mean((pred - pred_mean) * (target - target_mean))
    denominator = mean((pred - pred_mean) ** 2) + mean((target - target_mean) ** 2)
    denominator = denominator + (pred_mean - target_mean) ** 2
    loss = (1 - 2 * covariance / denominator.clamp_min(1e-8)) / 2
    return torch.where(count > 0, loss, torch.zeros_like(loss))


def _elementwise(function: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """A per-sample loss averaged over the samples whose `weight` is 1 (0 with none)."""

    def loss(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        values = function(pred, target, reduction="none")
        if weight is None:
            return values.mean()
        return (values * weight).sum() / weight.sum().clamp_min(1)

    return loss


REGRESSION_LOSSES = {
    "mse": _elementwise(F.mse_loss),
    "l1": _elementwise(F.l1_loss),
    "smooth_l1": _elementwise(F.smooth_l1_loss),
    "ccc": ccc_loss,
}


def labelled(target: Tensor) -> tuple[Tensor, Tensor]:
    """The regression targets with NaN (not annotated) replaced by 0, and the mask of labelled
    samples as 0/1 weights: a masked sample then adds exactly 0 to the loss and its gradient."""
    mask = torch.isfinite(target)
    return torch.where(mask, target, torch.zeros_like(target)), mask.to(torch.float32)


# c_t of the uncertainty weighting: 1 for the classification likelihood, 1/2 for the Gaussian one.
LIKELIHOOD_SCALES = {"expression": 1.0, "valence": 0.5, "arousal": 0.5}


class MultiTaskLoss(nn.Module):
    """`w_e * CE + w_v * reg(valence) + w_a * reg(arousal)`, CE optionally class-weighted.

    The class weights are a buffer of `num_classes` (the data config's `classes`, passed by the
    loss groups) filled from the training split at fit time (never typed in, as the original's
    were), so they travel inside every checkpoint. `label_smoothing` is CE's own (PyTorch's
    `cross_entropy`: the target is (1 - e) one-hot + e / num_classes uniform).

    Besides the losses, `forward` returns `n_<task>`: how many samples of the batch had that
    task's label (as tensors, so counting costs no host sync); `combine` leaves out the terms of a
    task that no sample of the batch had.
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

    # The entries `combine` adds besides the total.
    combined_outputs: tuple[str, ...] = ()

    @property
    def outputs(self) -> tuple[str, ...]:
        """The names of the entries `forward` returns, known before any batch."""
        counts = tuple(f"n_{task}" for task in TASKS)
        return ("loss", *TASKS, *self.combined_outputs, *counts)

    def set_class_weights(self, weights: Tensor) -> None:
        self.class_weights.copy_(torch.as_tensor(weights, dtype=self.class_weights.dtype))

    def combine(
        self, parts: Mapping[str, Tensor], present: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """The total from the per-task losses (0 for a task no sample had, so it adds nothing);
        `present` is 1 for each task some sample of the batch had, else 0. Subclasses may add
        entries worth logging."""
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
        target, mask = labelled(va_target.float())
        parts = {
            "expression": F.cross_entropy(
                logits.float(),
                expression,
                weight=class_weights,
                label_smoothing=self.label_smoothing,
            ),
            "valence": self.regression(va_pred[:, 0].float(), target[:, 0], mask[:, 0]),
            "arousal": self.regression(va_pred[:, 1].float(), target[:, 1], mask[:, 1]),
        }
        counts = {
            "expression": mask.new_full((), float(expression.numel())),
            "valence": mask[:, 0].sum(),
            "arousal": mask[:, 1].sum(),
        }
        present = {task: (count > 0).float() for task, count in counts.items()}
        sizes = {f"n_{task}": count for task, count in counts.items()}
        return {**parts, **self.combine(parts, present), **sizes}


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

    combined_outputs = tuple(f"weight_{task}" for task in TASKS)

    def __init__(self, *args: Any, init_log_var: float = 0.0, **kwargs: Any) -> None:
        """`MultiTaskLoss`'s arguments, and `init_log_var`, every s_t at the start."""
        super().__init__(*args, **kwargs)
        self.log_vars = nn.Parameter(torch.full((len(TASKS),), float(init_log_var)))

    def combine(
        self, parts: Mapping[str, Tensor], present: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        precision = torch.exp(-self.log_vars)
        combined: dict[str, Tensor] = {}
        total = self.log_vars.new_zeros(())
        for i, task in enumerate(TASKS):
            weight = self.weights[task] * LIKELIHOOD_SCALES[task] * precision[i]
            # Without the task's labels its s_t / 2 would fall without bound: it is left out too.
            regulariser = present[task] * self.weights[task] * self.log_vars[i] / 2
            total = total + weight * parts[task] + regulariser
            combined[f"weight_{task}"] = weight.detach()
        return {"loss": total, **combined}
