"""Per-epoch training and validation loss and accuracy, kept in checkpoints across resumes, and
which epoch was best by the metric that chose the run's best checkpoint."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn

from fer_lightning.errors import ConfigError

# History name -> the key MultiTaskModule logs it under (train/loss is logged per step and per
# epoch, so Lightning suffixes the epoch mean with _epoch).
TRAIN_KEYS = {"train/loss": "train/loss_epoch", "train/acc": "train/acc"}
VAL_KEYS = {"val/loss": "val/loss", "val/acc": "val/acc"}
HISTORY_NAMES = {key: name for name, key in {**TRAIN_KEYS, **VAL_KEYS}.items()}
MODES = ("max", "min")


@dataclass(frozen=True)
class Monitor:
    """The metric that selects the best checkpoint (`callbacks.monitor` in the config)."""

    metric: str = "val/acc"
    mode: str = "max"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(
                f"callbacks.monitor.mode must be one of {', '.join(MODES)}, got {self.mode!r}"
            )

    @property
    def column(self) -> str:
        """The metric's name in the history's rows."""
        return HISTORY_NAMES.get(self.metric, self.metric)


class EpochHistory(list[dict[str, float]]):
    """The epoch rows in order, and the `Monitor` by which `best_epoch` judges them."""

    def __init__(
        self, rows: Iterable[dict[str, float]] = (), monitor: Monitor | None = None
    ) -> None:
        super().__init__(rows)
        self.monitor = monitor or Monitor()


class MetricHistory(pl.Callback):
    """Records train/val loss and accuracy each epoch for the curves in `results/`.

    The logger's files hold the same numbers, but a logger is optional (`logger=null`) and does not
    survive `resume=false` in a reused directory; the original project lost its loss history on
    every resume. This callback's state goes into each checkpoint (`state_dict`), so a resumed run
    draws its curves from epoch 1, and eval can draw the curves of the checkpoint it scores. A
    monitored metric other than those four is recorded with them after each validation, so that
    it names the best epoch as it names the best checkpoint.
    """

    def __init__(self, monitor: str = Monitor.metric, mode: str = Monitor.mode) -> None:
        self.monitor = Monitor(monitor, mode)
        extra = {} if monitor in HISTORY_NAMES else {monitor: monitor}
        self._val_keys = {**VAL_KEYS, **extra}
        self._epochs: dict[int, dict[str, float]] = {}
        self._epoch_started = time.monotonic()

    @property
    def epochs(self) -> EpochHistory:
        """One row per epoch, in order: `epoch` (1-based), then whichever of `train/loss`,
        `train/acc`, `val/loss`, `val/acc`, the monitored metric and `seconds` were recorded."""
        rows = [{"epoch": epoch + 1, **self._epochs[epoch]} for epoch in sorted(self._epochs)]
        return EpochHistory(rows, self.monitor)

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
            self._record(trainer, self._val_keys)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs before ModelCheckpoint's hook of the same name, so the epoch's checkpoint has it.
        row = self._record(trainer, TRAIN_KEYS)
        # Time spent in this process: a resume within an epoch loses the part before the stop.
        row["seconds"] = time.monotonic() - self._epoch_started

    def state_dict(self) -> dict[str, Any]:
        return {
            "epochs": {epoch: dict(row) for epoch, row in self._epochs.items()},
            "monitor": self.monitor.metric,
            "mode": self.monitor.mode,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # The monitor stays this run's: its config chooses this run's best checkpoint.
        self._epochs = {int(e): dict(row) for e, row in state_dict["epochs"].items()}


def recorded_history(trainer: pl.Trainer) -> EpochHistory:
    """The epochs a trainer's MetricHistory recorded; empty when it has none."""
    for callback in trainer.callbacks:
        if isinstance(callback, MetricHistory):
            return callback.epochs
    return EpochHistory()


def checkpoint_history(checkpoint: Mapping[str, Any]) -> EpochHistory:
    """The epochs recorded up to a checkpoint's save, judged by the monitor of the run that saved
    it; empty if it was saved without the callback."""
    state = checkpoint.get("callbacks", {}).get(MetricHistory().state_key)
    if not state:
        return EpochHistory()
    history = MetricHistory(state.get("monitor", Monitor.metric), state.get("mode", Monitor.mode))
    history.load_state_dict(state)
    return history.epochs


def best_epoch(history: Sequence[Mapping[str, float]]) -> Mapping[str, float] | None:
    """The epoch row best by the monitored metric (the first of ties, as ModelCheckpoint keeps the
    first), if any row has it.

    An `EpochHistory` carries the run's monitor; other rows are judged by the default one (val/acc,
    highest).
    """
    monitor = history.monitor if isinstance(history, EpochHistory) else Monitor()
    column = monitor.column
    rows = [row for row in history if not math.isnan(row.get(column, math.nan))]
    if not rows:
        return None
    pick = max if monitor.mode == "max" else min
    return pick(rows, key=lambda row: row[column])
