"""The multi-task LightningModule: one network, three answers, one weighted loss, the metric suite."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from fer_lightning.losses import MultiTaskLoss
from fer_lightning.metrics import MultiTaskMetrics


class MultiTaskModule(pl.LightningModule):
    """Trains `net` (image -> expression logits, valence/arousal) with `loss`.

    `config` is the run's resolved configuration as plain containers. It is stored in every
    checkpoint so eval, predict and export rebuild the network from a weights-only load, without
    unpickling code from the file.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: MultiTaskLoss,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        config: dict | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.config = config or {}
        num_classes = net.num_classes
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_metrics = MultiTaskMetrics(num_classes)
        self.test_metrics = MultiTaskMetrics(num_classes)
        # Test-time augmentation: None, or "flip" to average with the mirrored image's prediction.
        self.tta: str | None = None
        self.test_results: dict[str, Any] = {}
        self._test_outputs: list[dict[str, Tensor]] = []

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(images)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and datamodule is not None and self.loss.class_weighted:
            self.loss.set_class_weights(datamodule.class_weights())

    def _step(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        logits, va = self.net(batch["image"])
        losses = self.loss(logits, va, batch["expression"], batch["va"])
        return losses, logits, va

    def _log_losses(self, stage: str, losses: dict[str, Tensor], on_step: bool) -> None:
        batch_size = None
        for name, value in losses.items():
            key = f"{stage}/loss" if name == "loss" else f"{stage}/loss_{name}"
            self.log(
                key,
                value,
                on_step=on_step and name == "loss",
                on_epoch=True,
                prog_bar=name == "loss",
                sync_dist=not on_step,
                batch_size=batch_size,
            )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        losses, logits, _ = self._step(batch)
        self._log_losses("train", losses, on_step=True)
        self.train_acc(logits.detach(), batch["expression"])
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return losses["loss"]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        losses, logits, va = self._step(batch)
        self._log_losses("val", losses, on_step=False)
        self.val_metrics.update(logits.float(), va.float(), batch["expression"], batch["va"])

    def on_validation_epoch_end(self) -> None:
        metrics = self.val_metrics.compute()
        self.val_metrics.reset()
        # compute() has already gathered every rank's samples: the values need no further sync.
        self.log("val/acc", metrics.pop("acc"), prog_bar=True)
        self.log_dict({f"val/{k}": v for k, v in metrics.items()})

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        losses, logits, va = self._step(batch)
        if self.tta == "flip":
            flipped_logits, flipped_va = self.net(batch["image"].flip(-1))
            logits, va = (logits + flipped_logits) / 2, (va + flipped_va) / 2
        self._log_losses("test", losses, on_step=False)
        self.test_metrics.update(logits.float(), va.float(), batch["expression"], batch["va"])
        self._test_outputs.append(
            {
                "index": batch["index"].detach(),
                "expression": batch["expression"].detach(),
                "va": batch["va"].detach(),
                "probs": logits.float().softmax(dim=1).detach(),
                "va_pred": va.float().detach(),
            }
        )

    def on_test_epoch_start(self) -> None:
        self._test_outputs = []

    def on_test_epoch_end(self) -> None:
        metrics = self.test_metrics.compute()
        self.test_metrics.reset()
        self.log_dict({f"test/{k}": v for k, v in metrics.items()})
        outputs = {
            key: torch.cat([o[key] for o in self._test_outputs]) for key in self._test_outputs[0]
        } if self._test_outputs else {}
        if outputs and self.trainer.world_size > 1:
            outputs = {k: v.flatten(0, 1) for k, v in self.all_gather(outputs).items()}
        self.test_results = {
            "metrics": {k: float(v) for k, v in metrics.items()},
            "outputs": {k: v.cpu().numpy() for k, v in outputs.items()},
        }
        self._test_outputs = []

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["fer_config"] = self.config
