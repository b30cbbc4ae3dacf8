"""MetricHistory's rows survive checkpoints; the best epoch is the monitored metric's pick."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from pytorch_lightning.trainer.states import TrainerFn

from fer_lightning.errors import ConfigError
from fer_lightning.runs.history import MetricHistory, best_epoch, checkpoint_history

EPOCHS = [  # val/acc is best at epoch 2, val/loss at epoch 3, val/f1 (tied) first at epoch 1
    {"train/loss_epoch": 2.0, "train/acc": 0.3, "val/loss": 2.5, "val/acc": 0.2, "val/f1": 0.4},
    {"train/loss_epoch": 1.5, "train/acc": 0.4, "val/loss": 2.1, "val/acc": 0.5, "val/f1": 0.1},
    {"train/loss_epoch": 1.2, "train/acc": 0.5, "val/loss": 1.9, "val/acc": 0.4, "val/f1": 0.4},
]


def _epoch(history: MetricHistory, epoch: int, logged: dict[str, float]) -> None:
    """Drives the callback's hooks as Lightning does for one epoch with validation."""
    trainer = SimpleNamespace(
        current_epoch=epoch,
        sanity_checking=False,
        state=SimpleNamespace(fn=TrainerFn.FITTING),
        callback_metrics={key: torch.tensor(value) for key, value in logged.items()},
    )
    history.on_train_epoch_start(trainer, None)
    history.on_validation_end(trainer, None)
    history.on_train_epoch_end(trainer, None)


def test_history_state_round_trips_through_a_checkpoint_file(tmp_path):
    history = MetricHistory()
    _epoch(history, 0, {"train/loss_epoch": 2.0, "train/acc": 0.3, "val/loss": 2.5, "val/acc": 0.2})
    _epoch(history, 1, {"train/loss_epoch": 1.5, "train/acc": 0.4, "val/loss": 2.1, "val/acc": 0.3})
    torch.save({"callbacks": {history.state_key: history.state_dict()}}, tmp_path / "h.ckpt")

    stored = torch.load(tmp_path / "h.ckpt", weights_only=True)
    restored = MetricHistory()
    restored.load_state_dict(stored["callbacks"][history.state_key])
    assert restored.epochs == history.epochs == checkpoint_history(stored)
    assert [row["epoch"] for row in restored.epochs] == [1, 2]
    assert restored.epochs[1]["train/loss"] == pytest.approx(1.5)
    assert restored.epochs[1]["val/acc"] == pytest.approx(0.3)
    # Each epoch's own duration, measured from its start (a few microseconds here).
    assert all(0 <= row["seconds"] < 60 for row in restored.epochs)


def _history(*monitor: str) -> MetricHistory:
    history = MetricHistory(*monitor)
    for epoch, logged in enumerate(EPOCHS):
        _epoch(history, epoch, logged)
    return history


@pytest.mark.parametrize(
    ("metric", "mode", "epoch"),
    [("val/acc", "max", 2), ("val/loss", "min", 3), ("val/f1", "max", 1), ("val/acc", "min", 1)],
)
def test_the_best_epoch_follows_the_monitored_metric_and_mode(metric, mode, epoch):
    history = _history(metric, mode)
    assert best_epoch(history.epochs)["epoch"] == epoch
    # A checkpoint's history is judged by the monitor of the run that saved it.
    stored = {"callbacks": {history.state_key: history.state_dict()}}
    assert best_epoch(checkpoint_history(stored))["epoch"] == epoch


def test_the_best_epoch_skips_epochs_without_the_metric_or_with_nan():
    history = MetricHistory("val/loss", "min")
    _epoch(history, 0, {"train/loss_epoch": 2.0, "val/loss": math.nan})
    _epoch(history, 1, {"train/loss_epoch": 1.0})
    assert best_epoch(history.epochs) is None
    _epoch(history, 2, {"train/loss_epoch": 1.0, "val/loss": 3.0})
    assert best_epoch(history.epochs)["epoch"] == 3
    # Plain rows (no monitor attached) are judged as the default config monitors: val/acc, max.
    assert best_epoch([{"epoch": 1, "val/acc": 0.1}, {"epoch": 2, "val/acc": 0.3}])["epoch"] == 2


def test_an_unknown_monitor_mode_is_a_config_error():
    with pytest.raises(ConfigError, match=r"callbacks\.monitor\.mode"):
        MetricHistory("val/acc", "highest")


def test_a_checkpoint_without_the_callbacks_or_its_monitor_has_the_defaults():
    """A checkpoint saved without callbacks has no history; one saved before the history kept
    its monitor is judged by the default one (val/acc, highest)."""
    assert checkpoint_history({}) == [] and checkpoint_history({"callbacks": {}}) == []
    history = _history("val/loss", "min")
    state = {"epochs": history.state_dict()["epochs"]}
    rows = checkpoint_history({"callbacks": {history.state_key: state}})
    assert rows == history.epochs
    assert rows.monitor == MetricHistory().monitor
    assert best_epoch(rows)["epoch"] == 2
