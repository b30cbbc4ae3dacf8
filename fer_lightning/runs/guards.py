"""Guards against a training step that would poison the weights or a checkpoint."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from fer_lightning.errors import ConfigError
from fer_lightning.metrics.suite import DIMENSIONS
from fer_lightning.runs.ranks import on_any_rank
from fer_lightning.values import is_int

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


def all_finite(tensors: list[Tensor]) -> Tensor:
    """Whether every element of `tensors` is finite, as a tensor on their device (no host sync)."""
    if not tensors:
        return torch.tensor(True)
    return torch.stack([torch.isfinite(t).all() for t in tensors]).all()


def _verdicts(pending: list[tuple[int, int, int, Tensor, Tensor]]) -> list[bool]:
    """The kept verdicts, read in one host sync."""
    if not pending:
        return []
    return torch.stack([verdict for *_, verdict in pending]).tolist()


class NonFiniteLoss(pl.Callback):
    """What a nan or inf training loss does: `stop` the run, or `skip` that optimizer step.

    `stop` keeps each batch's verdict on the device and reads the verdicts every
    `check_every_n_steps` batches, at every checkpoint save and at the epoch's end (one host
    sync there, and under DDP one vote across ranks, instead of one of each per step): the run
    ends with a one-line error naming the epoch, batch and step of the first non-finite loss,
    and the last checkpoint, saved before that step, stays as it was. `skip` must decide before
    each update: it reads, once per optimizer step, whether the gradients are finite (under DDP
    they are the all-reduced ones, the same on every rank, so the ranks agree without a vote; in
    one process the loss counts too), drops that step's gradients (with gradient accumulation,
    of the whole accumulated step) and warns with a running count; the logged epoch mean of the
    loss includes the bad batch. Under either action a checkpoint is never written with
    non-finite weights (they can also come from an infinite gradient of a finite loss).
    """

    def __init__(self, action: str = "stop", check_every_n_steps: int = 50) -> None:
        if action not in ACTIONS:
            raise ConfigError(
                f"on_nonfinite_loss must be one of {', '.join(ACTIONS)}, got {action!r}"
            )
        if not is_int(check_every_n_steps) or check_every_n_steps < 1:
            raise ConfigError(
                f"check_every_n_steps must be a positive integer, got {check_every_n_steps!r}"
            )
        self.action = action
        self.check_every_n_steps = check_every_n_steps
        self.skipped = 0
        self._batch_idx = 0
        # (epoch, batch, optimizer step, loss, its verdict on the device) since the last read
        self._pending: list[tuple[int, int, int, Tensor, Tensor]] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_idx = batch_idx  # for the message: on_before_backward is not given it

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        loss = loss.detach()
        where = (trainer.current_epoch, self._batch_idx, trainer.global_step + 1)
        self._pending.append((*where, loss, torch.isfinite(loss).all()))

    def on_train_batch_end(self, trainer: pl.Trainer, *module_outputs_batch_and_index: Any) -> None:
        batch_idx = module_outputs_batch_and_index[-1]
        if (batch_idx + 1) % self.check_every_n_steps == 0:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: pl.Trainer) -> None:
        """Reads the verdicts kept since the last read; stops at the first non-finite loss."""
        pending, self._pending = self._pending, []
        if self.action != "stop":
            return
        bad = [p for p, finite in zip(pending, _verdicts(pending), strict=True) if not finite]
        (anywhere,) = on_any_rank(trainer, bool(bad))
        if not anywhere:
            return
        if not bad:
            raise ConfigError(
                "the training loss is not finite on another DDP rank: stopped, the last "
                "checkpoint is intact; lower optimizer.lr, or set on_nonfinite_loss=skip"
            )
        epoch, batch_idx, step, loss, _ = bad[0]
        raise ConfigError(
            f"the training loss is {loss.item()} at epoch {epoch}, batch {batch_idx} (optimizer "
            f"step {step}): stopped, the last checkpoint (saved before that step) is intact; "
            "lower optimizer.lr, or set on_nonfinite_loss=skip"
        )

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.action != "skip":
            return
        pending, self._pending = self._pending, []
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        finite = all_finite(grads)
        if trainer.world_size == 1 and pending:  # the loss of every rank is not known here
            finite = finite & torch.stack([verdict for *_, verdict in pending]).all()
        if bool(finite):
            return
        optimizer.zero_grad(set_to_none=True)  # optimizers leave parameters without gradients
        self.skipped += 1
        epoch, batch_idx, step, loss, _ = pending[-1] if pending else (0, 0, 0, None, None)
        log.warning(
            "the training loss is %s at epoch %d, batch %d (optimizer step %d) or its gradients "
            "are not finite: skipping this optimizer step (%d skipped so far)",
            "unknown" if loss is None else loss.item(),
            epoch,
            batch_idx,
            step,
            self.skipped,
        )

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._check(trainer)  # a non-finite loss names its step before the weights are checked
        if not bool(all_finite(list(pl_module.parameters()))):
            raise ConfigError(
                f"the weights are no longer finite at epoch {trainer.current_epoch}, optimizer "
                f"step {trainer.global_step}: not saving them, the last checkpoint is intact; "
                "lower optimizer.lr"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict["skipped"]
