"""Epoch means and sums of per-batch values (the losses, the label counts) as torchmetrics objects.

The module updates them at every step, which costs a few tensor additions on the device, and
logs each object once per epoch: Lightning then computes (and, under DDP, syncs) it at the epoch's
end. Logging a tensor at every step instead costs Lightning's bookkeeping per call, 0.3-1 ms each
on the 2-core CPU of bench/README.md ("Training-step overhead"). Their states are what
`runs.state.epoch_state` checkpoints within an epoch.

Not torchmetrics' MeanMetric or SumMetric: their NaN check waits for the device at every step, and
with the check disabled (torchmetrics 1.9) MeanMetric ignores the weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchmetrics import Metric


class EpochMean(Metric):
    """The weighted mean of the epoch's batch values, NaN for an epoch of zero weight.

    Weighted by batch size it is Lightning's epoch mean of a logged value; weighted by the labelled
    count, a masked task's loss is the mean over the epoch's labelled samples.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, value: Tensor, weight: Tensor | int) -> None:
        """Add one batch's `value`, a mean over `weight` samples."""
        self.total = self.total + value.float() * weight
        self.count = self.count + weight

    def compute(self) -> Tensor:
        return torch.where(self.count > 0, self.total / self.count, math.nan)


class EpochSum(Metric):
    """The sum of the epoch's batch values (how many samples had a task's label)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, value: Tensor) -> None:
        self.total = self.total + value.float()

    def compute(self) -> Tensor:
        return self.total


def epoch_key(stage: str, name: str) -> str:
    """The logged name of a loss entry's epoch value (docs/run-directory.md)."""
    if name == "loss":
        return "train/loss_epoch" if stage == "train" else f"{stage}/loss"
    return f"{stage}/{name}" if name.startswith("n_") else f"{stage}/loss_{name}"


class EpochLosses(nn.Module):
    """Per stage, the epoch value of each entry the loss returns (`MultiTaskLoss.outputs`): the
    sum of the `n_<task>` counts, the mean over the samples of the rest, over the labelled
    samples (the task's count) for a task in `masked`."""

    def __init__(self, outputs: Sequence[str], stages: Sequence[str], masked: Sequence[str]):
        super().__init__()
        self.outputs = tuple(outputs)
        self.masked = tuple(masked)
        self.values = nn.ModuleDict(
            {
                f"{stage}_{name}": EpochSum() if name.startswith("n_") else EpochMean()
                for stage in stages
                for name in self.outputs
            }
        )

    def update(self, stage: str, losses: Mapping[str, Tensor], batch_size: int) -> None:
        for name, value in losses.items():
            metric = self.values[f"{stage}_{name}"]
            if name.startswith("n_"):
                metric.update(value)
            else:
                weight = losses[f"n_{name}"] if name in self.masked else batch_size
                metric.update(value.detach(), weight)

    def logged(self, stage: str) -> dict[str, Metric]:
        """The stage's epoch values by the names they are logged under."""
        return {epoch_key(stage, name): self.values[f"{stage}_{name}"] for name in self.outputs}
