"""Guards against a training step that would poison the weights or a checkpoint."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch

from fer_lightning.errors import ConfigError
from fer_lightning.metrics.suite import DIMENSIONS

log = logging.getLogger(__name__)

ACTIONS = ("stop", "skip")
DIMENSION_PREFIXES = tuple(f"val/{dimension}_" for dimension in DIMENSIONS)


def require_dimension_monitors(trainer: pl.Trainer, logged: set[str]) -> None:
    """A checkpoint or early-stopping monitor on a valence/arousal metric that the validation
    split has no labels for (the metric suite leaves it out, docs/metrics.md) stops the run in one
    line, not in Lightning's callback with a list of every logged name."""
    for callback in trainer.callbacks:
        monitor = getattr(callback, "monitor", None)
        dimension = isinstance(monitor, str) and monitor.startswith(DIMENSION_PREFIXES)
        if dimension and monitor not in logged:
            raise ConfigError(
                f"callbacks.monitor.metric={monitor} but no validation sample has valence/arousal "
                "labels: monitor an expression metric (val/acc, val/f1_macro, ...)"
            )


class NonFiniteLoss(pl.Callback):
    """What a nan or inf training loss does: `stop` the run, or `skip` that optimizer step.

    The loss is checked before backward, so under `stop` the weights are still those of the last
    good step; the run ends with a one-line error naming the epoch, batch and step, and the last
    checkpoint stays as it was. `skip` drops the gradients of that optimizer step (with gradient
    accumulation, of the whole accumulated step) and warns with a running count; the logged epoch
    mean of the loss includes the bad batch. Under either action a checkpoint is never written
    with non-finite weights (they can also come from an infinite gradient of a finite loss).
    """

    def __init__(self, action: str = "stop") -> None:
        if action not in ACTIONS:
            raise ConfigError(
                f"on_nonfinite_loss must be one of {', '.join(ACTIONS)}, got {action!r}"
            )
        self.action = action
        self.skipped = 0
        self._skip_step = False
        self._batch_idx = 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_idx = batch_idx  # for the message: on_before_backward is not given it

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        # One decision for all DDP ranks: they must stop, or skip, together.
        finite = trainer.strategy.reduce_boolean_decision(
            bool(torch.isfinite(loss).all()), all=True
        )
        if finite:
            return
        where = (
            f"epoch {trainer.current_epoch}, batch {self._batch_idx} "
            f"(optimizer step {trainer.global_step + 1})"
        )
        if self.action == "stop":
            raise ConfigError(
                f"the training loss is {loss.item()} at {where}: stopped before updating the "
                "weights, the last checkpoint is intact; lower optimizer.lr, or set "
                "on_nonfinite_loss=skip"
            )
        self._skip_step = True
        self.skipped += 1
        log.warning(
            "the training loss is %s at %s: skipping this optimizer step (%d skipped so far)",
            loss.item(),
            where,
            self.skipped,
        )

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._skip_step:
            optimizer.zero_grad(set_to_none=True)  # optimizers leave parameters without gradients
            self._skip_step = False

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        finite = torch.stack([torch.isfinite(p).all() for p in pl_module.parameters()]).all()
        if not finite:
            raise ConfigError(
                f"the weights are no longer finite at epoch {trainer.current_epoch}, optimizer "
                f"step {trainer.global_step}: not saving them, the last checkpoint is intact; "
                "lower optimizer.lr"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict["skipped"]
