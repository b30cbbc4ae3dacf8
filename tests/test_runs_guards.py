"""NonFiniteLoss: a nan/inf loss stops the run naming its step, before any checkpoint after it, or
skips its step; non-finite weights never reach a checkpoint; and `stop` reads the device only
every N steps."""

from __future__ import annotations

import logging
import math
import sys
from collections import Counter
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from fer_lightning.errors import ConfigError
from fer_lightning.runs import guards
from fer_lightning.runs.guards import NonFiniteLoss, all_finite


class NanAt(pl.LightningModule):
    """A linear model whose loss is nan at one batch; records its weight after every batch."""

    def __init__(self, batch: int | None) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.nan_batch = batch
        self.weights: list[torch.Tensor] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.layer(batch).pow(2).mean()
        return loss * float("nan") if batch_idx == self.nan_batch else loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.weights.append(self.layer.weight.detach().clone())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.randn(24, 4, generator=torch.Generator().manual_seed(0)), 4)


class SaveEveryBatch(pl.Callback):
    def __init__(self, directory) -> None:
        self.directory = directory

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        trainer.save_checkpoint(self.directory / f"batch{batch_idx}.ckpt")


def fit(
    module: pl.LightningModule, action: str, *callbacks: pl.Callback
) -> tuple[pl.Trainer, NonFiniteLoss]:
    callback = NonFiniteLoss(action)
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback, *callbacks],
    )
    trainer.fit(module)
    return trainer, callback


def test_a_nonfinite_loss_stops_naming_the_step_before_its_checkpoint(tmp_path):
    module = NanAt(batch=3)
    with pytest.raises(ConfigError) as stopped:
        fit(module, "stop", SaveEveryBatch(tmp_path))
    assert str(stopped.value) == (
        "the training loss is nan at epoch 0, batch 3 (optimizer step 4): stopped, the last "
        "checkpoint (saved before that step) is intact; lower optimizer.lr, or set "
        "on_nonfinite_loss=skip"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"batch{i}.ckpt" for i in range(3)]


def test_a_nonfinite_loss_on_another_rank_stops_this_one_too(monkeypatch):
    monkeypatch.setattr(guards, "on_any_rank", lambda trainer, *flags: (True,))
    with pytest.raises(ConfigError) as stopped:
        guards.NonFiniteLoss("stop")._check(SimpleNamespace(world_size=2))
    assert str(stopped.value) == (
        "the training loss is not finite on another DDP rank: stopped, the last checkpoint is "
        "intact; lower optimizer.lr, or set on_nonfinite_loss=skip"
    )


def test_a_nonfinite_loss_is_found_at_the_epoch_end_without_a_checkpoint():
    with pytest.raises(ConfigError, match=r"epoch 0, batch 3 \(optimizer step 4\)"):
        fit(NanAt(batch=3), "stop")


def test_stop_reads_the_device_once_per_n_steps(monkeypatch):
    """Host syncs of the guard's own making (reads of a tensor's value) in 6 steps: one, at the
    epoch's end, where each step read its loss before."""
    reads: Counter = Counter()
    for name in ("item", "tolist", "__bool__", "__float__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name):
            if "fer_lightning" in sys._getframe(1).f_code.co_filename:
                reads[_name] += 1
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    fit(NanAt(batch=None), "stop")
    assert sum(reads.values()) == 1, reads


def test_a_nonfinite_loss_can_skip_its_step_and_weights_never_reach_a_checkpoint(tmp_path):
    module = NanAt(batch=3)
    trainer, callback = fit(module, "skip")
    assert callback.skipped == 1 and len(module.weights) == 6
    assert torch.equal(module.weights[3], module.weights[2])
    assert not torch.equal(module.weights[4], module.weights[3])
    with torch.no_grad():
        module.layer.weight[0, 0] = float("inf")
    with pytest.raises(ConfigError, match="not saving"):
        trainer.save_checkpoint(tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()


def test_no_gradients_are_all_finite_and_one_infinity_is_not():
    """A step whose loss reached no parameter (every gradient None) has nothing to skip."""
    assert bool(all_finite([])) is True
    assert bool(all_finite([torch.ones(2), torch.zeros(3)])) is True
    assert bool(all_finite([torch.ones(2), torch.tensor([0.0, float("inf")])])) is False


def test_weights_no_longer_finite_are_not_saved_in_one_line():
    broken = nn.Linear(2, 1)
    with torch.no_grad():
        broken.weight[0, 0] = float("nan")
    trainer = SimpleNamespace(world_size=1, current_epoch=2, global_step=40)
    with pytest.raises(ConfigError) as refused:
        NonFiniteLoss("stop").on_save_checkpoint(trainer, broken, {})
    assert str(refused.value) == (
        "the weights are no longer finite at epoch 2, optimizer step 40: not saving them, the "
        "last checkpoint is intact; lower optimizer.lr"
    )
    NonFiniteLoss("stop").on_save_checkpoint(trainer, nn.Linear(2, 1), {})


def test_skip_drops_a_step_whose_loss_or_gradients_are_not_finite_and_counts_it(caplog):
    """In process, on a stand-in Trainer: under DDP only the (all-reduced) gradients decide."""
    callback = NonFiniteLoss("skip")
    layer = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)

    def step(losses: list[float], gradient: float, world_size: int = 1, batch: int = 2) -> bool:
        """Runs the hooks of one optimizer step over `losses`' batches (accumulated from
        `batch` on); whether its gradients survived to the optimizer."""
        trainer = SimpleNamespace(world_size=world_size, current_epoch=1, global_step=4)
        for offset, loss in enumerate(losses):
            callback.on_train_batch_start(trainer, layer, None, batch + offset)
            callback.on_before_backward(trainer, layer, torch.tensor(loss))
        for parameter in layer.parameters():
            parameter.grad = torch.full_like(parameter, gradient)
        callback.on_before_optimizer_step(trainer, layer, optimizer)
        return all(p.grad is not None for p in layer.parameters())

    nan, inf = float("nan"), float("inf")
    with caplog.at_level(logging.WARNING, logger="fer_lightning.runs.guards"):
        assert step([1.0], 0.5)
        assert not step([1.0], inf)
        assert not step([1.0, nan], 0.5, batch=3)  # the accumulated step's second batch
        assert step([1.0], 0.5)  # the skipped step's losses are not judged again
        assert step([nan], 0.5, world_size=2)
        assert not step([], inf)  # no loss reached the callback (a closure that skipped it)
    assert callback.skipped == 3
    said = "or its gradients are not finite: skipping this optimizer step"
    assert [r.getMessage() for r in caplog.records] == [
        f"the training loss is {loss} at epoch {epoch}, batch {batch} (optimizer step {at}) "
        f"{said} ({count} skipped so far)"
        for loss, epoch, batch, at, count in [
            ("1.0", 1, 2, 5, 1),
            ("nan", 1, 4, 5, 2),
            ("unknown", 0, 0, 0, 3),
        ]
    ]
    resumed = NonFiniteLoss("skip")
    resumed.load_state_dict(callback.state_dict())
    assert resumed.skipped == 3


def test_stop_reads_the_verdicts_every_n_batches_naming_the_first_bad_one():
    """On a stand-in Trainer: a nan at batch 4 is read, and the run stopped, at batch 5's end
    (every 3 batches), not before."""
    guard = NonFiniteLoss("stop", check_every_n_steps=3)
    trainer = SimpleNamespace(current_epoch=2, global_step=10, world_size=1)
    ended = []
    with pytest.raises(ConfigError) as stopped:
        for batch_idx, loss in enumerate([1.0, 1.0, 1.0, 1.0, math.nan, 1.0, 1.0]):
            guard.on_train_batch_start(trainer, None, None, batch_idx)
            guard.on_before_backward(trainer, None, torch.tensor(loss))
            trainer.global_step += 1
            guard.on_train_batch_end(trainer, None, None, None, batch_idx)
            ended.append(batch_idx)
    assert ended == [0, 1, 2, 3, 4]
    assert str(stopped.value).startswith(
        "the training loss is nan at epoch 2, batch 4 (optimizer step 15): stopped"
    )


@pytest.mark.parametrize(
    ("action", "every", "message"),
    [
        ("halt", 50, "on_nonfinite_loss must be one of stop, skip, got 'halt'"),
        ("stop", 0, "check_every_n_steps must be a positive integer, got 0"),
        ("stop", True, "check_every_n_steps must be a positive integer, got True"),
    ],
)
def test_an_unknown_action_or_impossible_cadence_is_refused_in_one_line(action, every, message):
    with pytest.raises(ConfigError) as refused:
        NonFiniteLoss(action, check_every_n_steps=every)
    assert str(refused.value) == message


def test_by_default_a_nonfinite_loss_stops_the_run_and_is_read_every_50_batches():
    """docs/resuming.md's defaults, which `on_nonfinite_loss` alone (stop or skip) leaves."""
    guard = NonFiniteLoss()
    assert (guard.action, guard.check_every_n_steps, guard.skipped) == ("stop", 50, 0)
    assert NonFiniteLoss("skip", check_every_n_steps=1).check_every_n_steps == 1  # every batch
