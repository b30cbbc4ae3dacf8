"""NonFiniteLoss: a nan/inf loss stops the run before the update, or skips its step; non-finite
weights never reach a checkpoint."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from fer_lightning.errors import ConfigError
from fer_lightning.runs.guards import NonFiniteLoss


class NanAt(pl.LightningModule):
    """A linear model whose loss is nan at one batch; records its weight after every batch."""

    def __init__(self, batch: int) -> None:
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


def fit(module: pl.LightningModule, action: str) -> tuple[pl.Trainer, NonFiniteLoss]:
    callback = NonFiniteLoss(action)
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(module)
    return trainer, callback


def test_a_nonfinite_loss_stops_before_the_update_naming_the_step():
    module = NanAt(batch=3)
    with pytest.raises(ConfigError, match=r"epoch 0, batch 3 \(optimizer step 4\)"):
        fit(module, "stop")
    assert len(module.weights) == 3
    assert torch.equal(module.layer.weight, module.weights[-1])


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
