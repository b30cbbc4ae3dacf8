"""Per-epoch training and validation loss and accuracy, kept in checkpoints across resumes."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn

# History name -> the key MultiTaskModule logs it under (train/loss is logged per step and per
# epoch, so Lightning suffixes the epoch mean with _epoch).
TRAIN_KEYS = {"train/loss": "train/loss_epoch", "train/acc": "train/acc"}
VAL_KEYS = {"val/loss": "val/loss", "val/acc": "val/acc"}


class MetricHistory(pl.Callback):
    """Records train/val loss and accuracy each epoch for the curves in `results/`.

    The logger's files hold the same numbers, but a logger is optional (`logger=null`) and does not
    survive `resume=false` in a reused directory; the original project lost its loss history on
    every resume. This callback's state goes into each checkpoint (`state_dict`), so a resumed run
    draws its curves from epoch 1, and eval can draw the curves of the checkpoint it scores.
    """

    def __init__(self) -> None:
        self._epochs: dict[int, dict[str, float]] = {}
        self._epoch_started = time.monotonic()

    @property
    def epochs(self) -> list[dict[str, float]]:
        """One row per epoch, in order: `epoch` (1-based), then whichever of `train/loss`,
        `train/acc`, `val/loss`, `val/acc`, `seconds` were recorded."""
        return [{"epoch": epoch + 1, **self._epochs[epoch]} for epoch in sorted(self._epochs)]

    def _record(self, trainer: pl.Trainer, keys: Mapping[str, str]) -> dict[str, float]:
        row = self._epochs.setdefault(trainer.current_epoch, {})
        logged = trainer.callback_metrics
        row.update({name: float(logged[key]) for name, key in keys.items() if key in logged})
        return row

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_started = time.monotonic()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Here, not in on_validation_epoch_end: callbacks run that hook before the module's, which
        # is where val/acc is logged. Sanity checks and trainer.validate() are not epochs.
        if not trainer.sanity_checking and trainer.state.fn == TrainerFn.FITTING:
            self._record(trainer, VAL_KEYS)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs before ModelCheckpoint's hook of the same name, so the epoch's checkpoint has it.
        row = self._record(trainer, TRAIN_KEYS)
        # Time spent in this process: a resume within an epoch loses the part before the stop.
        row["seconds"] = time.monotonic() - self._epoch_started

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": {epoch: dict(row) for epoch, row in self._epochs.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._epochs = {int(e): dict(row) for e, row in state_dict["epochs"].items()}


def recorded_history(trainer: pl.Trainer) -> list[dict[str, float]]:
    """The epochs a trainer's MetricHistory recorded; empty when it has none."""
    for callback in trainer.callbacks:
        if isinstance(callback, MetricHistory):
            return callback.epochs
    return []


def checkpoint_history(checkpoint: Mapping[str, Any]) -> list[dict[str, float]]:
    """The epochs recorded up to a checkpoint's save; empty if it was saved without the callback."""
    history = MetricHistory()
    state = checkpoint.get("callbacks", {}).get(history.state_key)
    if state:
        history.load_state_dict(state)
    return history.epochs


def best_epoch(history: Sequence[Mapping[str, float]]) -> Mapping[str, float] | None:
    """The epoch row with the highest validation accuracy (the first of ties), if any has one."""
    rows = [row for row in history if not math.isnan(row.get("val/acc", math.nan))]
    return max(rows, key=lambda row: row["val/acc"]) if rows else None
