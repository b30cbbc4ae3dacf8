"""The metric suite per source of a joint run (`data=multi`, docs/data.md#joint-training).

`SourceMetrics` is the callback the module adds when its datamodule has `source_names`: it scores
each source's samples of the validation and test batches apart, logs `val/<source>/<name>` and
`test/<source>/<name>`, and adds `<source>/<name>` to the test results (so metrics.json has them
beside the pooled `test/<name>`). Picking a source's rows is a boolean index, which waits for the
device: once per source and evaluation batch, never in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from torch import Tensor

from fer_lightning.metrics.suite import MultiTaskMetrics


class SourceMetrics(pl.Callback):
    """`MultiTaskMetrics` per source and stage, fed with the module's evaluation outputs."""

    def __init__(self, source_names: Sequence[str]) -> None:
        self.source_names = list(source_names)
        self._metrics: dict[str, list[MultiTaskMetrics]] = {}
        self._test: dict[str, float] = {}

    def _update(self, trainer: pl.Trainer, stage: str, outputs: Any, batch: dict) -> None:
        logits, va = outputs["logits"], outputs["va"]
        if stage not in self._metrics:
            self._metrics[stage] = [
                MultiTaskMetrics(logits.shape[1]).to(logits.device) for _ in self.source_names
            ]
        part = stage if stage == "val" else trainer.datamodule.test_split
        sources = trainer.datamodule.source_of(part, batch["index"])
        for s, metrics in enumerate(self._metrics[stage]):
            rows = sources == s
            metrics.update(logits[rows], va[rows], batch["expression"][rows], batch["va"][rows])

    def _compute(self, stage: str) -> dict[str, Tensor]:
        scores = {}
        for name, metrics in zip(self.source_names, self._metrics.pop(stage, []), strict=False):
            scores.update({f"{name}/{key}": value for key, value in metrics.compute().items()})
        return scores

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self._update(trainer, "val", outputs, batch)

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self._update(trainer, "test", outputs, batch)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.log_dict({f"val/{key}": value for key, value in self._compute("val").items()})

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        scores = self._compute("test")
        split = pl_module.test_split  # the module that adds this callback names the part
        pl_module.log_dict({f"{split}/{key}": value for key, value in scores.items()})
        self._test = {key: float(value) for key, value in scores.items()}

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the module's on_test_epoch_end, which sets its test results afresh.
        pl_module.test_results["metrics"].update(self._test)
