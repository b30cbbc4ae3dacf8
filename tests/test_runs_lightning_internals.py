"""The adapter's hold on Lightning: each function still finds what it relies on in the installed
release, and names the attribute that is gone when it does not (the adapter's docstring says how
to extend the tested version range)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torchmetrics
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader

from fer_lightning.runs import lightning_internals as internals

BATCHES = 4
LOSS = "training_step.train/loss"  # results are keyed by the hook that logged them
PEAK = "training_step.train/peak"  # a max-reduced value: its sum is a running maximum


class Tiny(pl.LightningModule):
    """Logs what a LightningModule may log for its epoch: a mean and a maximum of tensors, and a
    torchmetrics object (MultiTaskModule's epoch values are such objects)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.mean = torchmetrics.MeanMetric()

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.layer(batch).pow(2).mean()
        self.mean(loss)
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        self.log("train/peak", loss, on_step=False, on_epoch=True, reduce_fx="max")
        self.log("train/mean", self.mean, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            torch.randn(4 * BATCHES, 4, generator=torch.Generator().manual_seed(0)), 4
        )


class Probe(pl.Callback):
    """Calls every adapter function where fault tolerance does, and keeps what they return."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx != 1:
            return
        sums = internals.epoch_sums(trainer)
        internals.skip_sigterm_broadcast(trainer)
        skipped = trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor
        internals.restore_sigterm_broadcast(trainer)
        self.seen.update(
            within=internals.within_epoch(trainer),
            shown=internals.step_logs_shown(trainer),
            broadcast=(skipped(), trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor),
            sums=sums,
            metrics=internals.epoch_metric_states(trainer),
        )
        before = {name: value.clone() for name, value in sums[LOSS].items()}
        peak = sums[PEAK]["value"].clone()
        # A saved key the resumed epoch has not logged (yet) is passed over, not the end.
        saved = {"training_step.train/gone": {}, LOSS: before, PEAK: {"value": peak + 1}}
        internals.add_to_epoch_sums(trainer, saved)
        after = internals.epoch_sums(trainer)
        self.seen.update(doubled=after[LOSS], before=before, peak=(peak, after[PEAK]["value"]))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seen["within_at_end"] = internals.within_epoch(trainer)


def test_every_function_finds_what_it_relies_on_in_this_lightning(tmp_path):
    probe = Probe()
    logger = CSVLogger(tmp_path, name="csv", version="")
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe],
    )
    trainer.fit(Tiny())
    seen = probe.seen
    assert seen["within"] and not seen["within_at_end"]
    assert seen["shown"] is True  # log_every_n_steps=1
    skipped, restored = seen["broadcast"]
    assert (
        skipped is None
        and restored.__func__ is type(trainer.fit_loop.epoch_loop)._broadcast_sigterm_tensor
    )
    assert set(seen["sums"]) == {LOSS, PEAK}  # the torchmetrics object's state is the module's
    assert set(seen["metrics"]) == {"mean"}  # by the metric's attribute in the module
    assert set(seen["metrics"]["mean"]) == {"mean_value", "weight"}
    for name, before in seen["before"].items():
        assert torch.equal(seen["doubled"][name], 2 * before), name
    peak, combined = seen["peak"]
    assert torch.equal(combined, peak + 1)  # the larger of the two, not their sum

    internals.adopt_csv_header(logger, ["epoch", "step", "train/loss_step"])
    assert logger.experiment.metrics_keys == ["epoch", "step", "train/loss_step"]


def test_a_missing_attribute_is_named():
    stripped = SimpleNamespace(fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace()))
    with pytest.raises(internals.LightningChanged, match=r"SimpleNamespace\._results.*internals"):
        internals.epoch_sums(stripped)
    with pytest.raises(internals.LightningChanged, match=r"has no SimpleNamespace\.epoch_progress"):
        internals.within_epoch(stripped)
