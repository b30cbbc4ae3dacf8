"""A callback that writes each rank's training loss of every step to `<dirpath>/rank<r>.json`,
for the DDP test of the loss the loggers show (the mean over the ranks): added to the real
training command as an extra callback, keyed by the optimizer steps done once the batch has
stepped (the logger records that batch's rows under one fewer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


class RecordStepLosses(pl.Callback):
    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.losses: dict[int, float] = {}

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: Any
    ) -> None:
        self.losses[trainer.global_step] = float(outputs["loss"])

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.losses))
