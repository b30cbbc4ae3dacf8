"""The multi-task LightningModule: one network, three answers, one weighted loss, the metric suite.

GPU path: batches arrive as uint8 and are normalised on the device by the datamodule's
``on_after_batch_transfer``; on CUDA the network and its inputs use the channels-last memory
layout (``channels_last``), which tensor-core convolutions need to run without transposes, and
``compile`` optionally runs the network's training forward through ``torch.compile``. On the
CPU the layout is the one measured faster for the model (``cpu_channels_last``, default per model
in fer_lightning/models/registry.py): the batches come channels-last, so no layout is forced on
them that the network does not want.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from fer_lightning.errors import ConfigError
from fer_lightning.losses import MultiTaskLoss
from fer_lightning.metrics.epoch import EpochLosses, epoch_key
from fer_lightning.metrics.expression import probabilities
from fer_lightning.metrics.sources import SourceMetrics
from fer_lightning.metrics.suite import MultiTaskMetrics
from fer_lightning.models import MultiTaskNet
from fer_lightning.models.finetune import (
    check_finetune_options,
    param_groups,
    parameter_summary,
    set_backbone_trainable,
)
from fer_lightning.models.registry import uses_channels_last
from fer_lightning.runs.ema import WeightAverage
from fer_lightning.runs.guards import require_dimension_monitors
from fer_lightning.runs.lightning_internals import step_logs_shown
from fer_lightning.runs.ranks import gather_outputs
from fer_lightning.runs.state import warn_where_nondeterministic
from fer_lightning.runs.stored_config import stored_ema_decay, stored_loss, stored_net

log = logging.getLogger(__name__)

# Where the module keeps the network: its weights are the state dict's `net.*` entries, and
# their moving average's (with `module.ema_decay`) the `ema.net.*` entries.
NET_PREFIX = "net."
EMA_PREFIX = "ema.net."
# Test-time augmentations: none, or "flip" (average with the mirrored image's prediction).
TTA_MODES = (None, "flip")
# The tasks whose labels a sample may lack (NaN): their epoch losses average labelled samples.
MASKED_TASKS = ("valence", "arousal")
STAGES = ("train", "val", "test")


def trained_net(checkpoint: Mapping[str, Any]) -> MultiTaskNet:
    """A checkpoint's network with its trained weights, in eval mode, for predict and export.

    Rebuilt from the run's stored config (see `MultiTaskModule.config`) by the project's own
    builder, so only tensors and checked plain values are read from the file; the loss and
    metrics are not needed to run it. A run with a weight average (`module.ema_decay`) validated
    and tested the average: that is the network it returns.
    """
    net = stored_net(checkpoint["fer_config"])
    state = checkpoint["state_dict"]
    prefix = EMA_PREFIX if any(k.startswith(EMA_PREFIX) for k in state) else NET_PREFIX
    weights = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    load_checkpoint_weights(net, weights, net.name)
    return net.eval()


def load_checkpoint_weights(module: nn.Module, weights: Mapping[str, Tensor], name: str) -> None:
    """Loads a checkpoint's weights strictly; weights of another shape are a one-line error."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        problem = lines[-1].strip() if lines else type(exc).__name__
        raise ConfigError(
            f"the checkpoint's weights do not fit the {name} network its config describes: "
            f"{problem[:120]}"
        ) from exc


class MultiTaskModule(pl.LightningModule):
    """Trains `net` (image -> expression logits, valence/arousal) with `loss`.

    Built one way from each source: `from_config` for a run (train, bench) and `from_checkpoint`
    for a trained network (eval).

    `config` is the run's resolved configuration as plain containers. It is stored in every
    checkpoint so eval, predict and export rebuild the network from a weights-only load, without
    unpickling code from the file.

    `channels_last` is the layout on CUDA; `cpu_channels_last` the layout on the CPU (None: the
    model's measured default, `models.registry.cpu_channels_last`). `compile` compiles the
    training forward when fitting (one graph; validation and testing run eagerly), keeping the
    state-dict keys, so checkpoints load into an uncompiled network.
    `tta="flip"` averages each test prediction with the mirrored image's. `test_split` is the
    split that `trainer.test` scores and the prefix of what it logs (eval sets it to `val` for
    `split=val`).

    Fine-tuning (docs/configuration.md): `freeze_backbone_epochs` trains only the heads for that
    many epochs; `backbone_lr_scale` and `layer_decay` scale the backbone's learning rate
    (`models.finetune.param_groups`); `ema_decay` keeps a moving average of the weights
    (`runs.ema.WeightAverage`), which validation and testing score.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: MultiTaskLoss,
        optimizer: Callable[..., torch.optim.Optimizer] | None,
        scheduler: Callable[..., Any] | None = None,
        config: dict | None = None,
        channels_last: bool = True,
        cpu_channels_last: bool | None = None,
        compile: bool = False,
        tta: str | None = None,
        freeze_backbone_epochs: int = 0,
        backbone_lr_scale: float = 1.0,
        layer_decay: float | None = None,
        ema_decay: float | None = None,
    ) -> None:
        super().__init__()
        check_finetune_options(freeze_backbone_epochs, backbone_lr_scale, layer_decay)
        self.net = net
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.config = config or {}
        self.channels_last = channels_last
        self.cpu_channels_last = cpu_channels_last
        self.compile_net = compile
        self._memory_format = torch.contiguous_format  # decided in setup, by the device
        # A function, not a module: the network's weights keep their state-dict keys.
        self._train_forward: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None
        self.freeze_backbone_epochs = freeze_backbone_epochs
        self.backbone_lr_scale = backbone_lr_scale
        self.layer_decay = layer_decay
        self.ema = WeightAverage(net, ema_decay) if ema_decay is not None else None
        num_classes = net.num_classes
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_metrics = MultiTaskMetrics(num_classes)
        self.test_metrics = MultiTaskMetrics(num_classes)
        self.epoch_losses = EpochLosses(loss.outputs, STAGES, MASKED_TASKS)
        self._unlogged = set(STAGES)  # the stages whose epoch values are not logged this epoch
        # Expression classes scored at test (None: all the network's), see `score_shared_classes`.
        self.scored_classes: int | None = None
        self.tta = tta
        self.test_split = "test"
        self.test_results: dict[str, Any] = {}
        # `val/<name>` of the latest validation, stored in every checkpoint: after testing the
        # best checkpoint, its validation scores, which a hyperparameter search may optimise.
        self.val_results: dict[str, float] = {}
        self._test_outputs: list[dict[str, Tensor]] = []

    @classmethod
    def from_config(cls, cfg: DictConfig) -> MultiTaskModule:
        """The module a composed training config describes, its `module` options included."""
        return cls(
            net=instantiate(cfg.model),
            loss=instantiate(cfg.loss),
            optimizer=instantiate(cfg.optimizer),
            scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
            config=OmegaConf.to_container(cfg, resolve=True),
            **cfg.get("module", {}),
        )

    @classmethod
    def from_checkpoint(
        cls, checkpoint: Mapping[str, Any], tta: str | None = None
    ) -> MultiTaskModule:
        """A trained module to test: network and loss rebuilt from the checkpoint's checked
        stored config (no ImageNet weights needed), its weights loaded, and no optimizer."""
        stored = checkpoint["fer_config"]
        net = stored_net(stored)
        module = cls(
            net=net,
            loss=stored_loss(stored),
            optimizer=None,
            config=stored,
            tta=tta,
            ema_decay=stored_ema_decay(stored),
        )
        load_checkpoint_weights(module, checkpoint["state_dict"], net.name)
        return module

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(images)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        # A class-balanced sampler already evens the classes out; weighting CE too would double it.
        balanced = getattr(datamodule, "uses_balanced_sampler", False)
        if stage == "fit" and datamodule is not None and self.loss.class_weighted and not balanced:
            self.loss.set_class_weights(datamodule.class_weights())
        warn_where_nondeterministic(self.trainer.strategy.root_device)
        device = self.trainer.strategy.root_device.type
        if uses_channels_last(self.net, device, self.channels_last, self.cpu_channels_last):
            # Parameters keep their layout when the strategy moves them to the device next.
            self._memory_format = torch.channels_last
            self.net.to(memory_format=torch.channels_last)
            if self.ema is not None:
                self.ema.net.to(memory_format=torch.channels_last)
        if stage == "fit" and self.compile_net and self._train_forward is None:
            # The training forward only, at the training batch's shape (its partial last batch
            # is dropped): the sanity check, validation's partial last batch and testing under
            # inference mode would each compile graphs of their own.
            self._train_forward = torch.compile(self.net.forward, dynamic=False)

    def _images(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["image"].contiguous(memory_format=self._memory_format)

    @property
    def scored_net(self) -> nn.Module:
        """The network validation and testing score: the weight average, if there is one."""
        return self.net if self.ema is None else self.ema.net

    def _step(
        self, batch: dict[str, Tensor], net: nn.Module | None = None
    ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        forward = net if net is not None else self._train_forward or self.net
        logits, va = forward(self._images(batch))
        losses = self.loss(logits, va, batch["expression"], batch["va"])
        return losses, logits, va

    def score_shared_classes(self, classes: int) -> None:
        """Test on the first `classes` expression codes only (an 8-class network on a 7-class
        dataset): the argmax, probabilities and metrics leave out the other classes' logits."""
        if classes > self.net.num_classes:
            raise ConfigError(
                f"the checkpoint's network knows {self.net.num_classes} expression classes, the "
                f"data has {classes}: set data.classes={self.net.num_classes}"
            )
        if classes < self.net.num_classes:
            self.scored_classes = classes
            self.test_metrics = MultiTaskMetrics(classes)

    def _log_losses(self, stage: str, losses: dict[str, Tensor], batch_size: int) -> None:
        """Adds a batch to the epoch values of the stage's losses (each the mean over the epoch's
        samples, over its labelled ones for a masked task) and of `<stage>/n_<task>`, how many
        samples had that task's label.

        The objects are logged at the epoch's first batch only: Lightning computes them at the
        epoch's end, synced over the ranks then (`fer_lightning.metrics.epoch`).
        """
        self.epoch_losses.update(stage, losses, batch_size)
        if stage not in self._unlogged:
            return
        self._unlogged.discard(stage)
        shown = epoch_key(stage, "loss")
        for key, metric in self.epoch_losses.logged(stage).items():
            self.log(key, metric, on_step=False, on_epoch=True, prog_bar=key == shown)
        if stage == "train":
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        losses, logits, _ = self._step(batch)
        loss = losses["loss"]
        # `train/loss_step` (docs/run-directory.md) is averaged over the ranks only at the steps
        # the loggers record, not at every step (the progress bar shows rank zero's in between).
        shown = self._mean_over_ranks(loss)
        self.log("train/loss_step", shown, on_step=True, on_epoch=False, prog_bar=True)
        self.train_acc.update(logits.detach(), batch["expression"])
        self._log_losses("train", losses, len(batch["expression"]))
        return loss

    def _mean_over_ranks(self, value: Tensor) -> Tensor:
        if self.trainer.world_size == 1 or not step_logs_shown(self.trainer):
            return value.detach()
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.trainer.world_size

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        losses, logits, va = self._step(batch, self.scored_net)
        self._log_losses("val", losses, len(batch["expression"]))
        self.val_metrics.update(logits.float(), va.float(), batch["expression"], batch["va"])
        return {"logits": logits.float(), "va": va.float()}  # for SourceMetrics

    def on_validation_epoch_end(self) -> None:
        metrics = self.val_metrics.compute()
        self.val_metrics.reset()
        self.val_results = {f"val/{k}": float(v) for k, v in metrics.items()}
        if not self.trainer.sanity_checking:
            require_dimension_monitors(self.trainer, set(self.val_results))
        # compute() has already gathered every rank's samples: the values need no further sync.
        self.log("val/acc", metrics.pop("acc"), prog_bar=True)
        self.log_dict({f"val/{k}": v for k, v in metrics.items()})

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        losses, logits, va = self._step(batch, self.scored_net)
        if self.tta == "flip":
            flipped_logits, flipped_va = self.scored_net(self._images(batch).flip(-1))
            logits, va = (logits + flipped_logits) / 2, (va + flipped_va) / 2
        if self.scored_classes is not None:
            logits = logits[:, : self.scored_classes]
        self._log_losses(self.test_split, losses, len(batch["expression"]))
        self.test_metrics.update(logits.float(), va.float(), batch["expression"], batch["va"])
        self._test_outputs.append(
            {
                "index": batch["index"].detach(),
                "expression": batch["expression"].detach(),
                "va": batch["va"].detach(),
                "probs": probabilities(logits.float()).detach(),
                "va_pred": va.float().detach(),
            }
        )
        return {"logits": logits.float(), "va": va.float()}

    def on_validation_epoch_start(self) -> None:
        self._unlogged.add("val")

    def on_test_epoch_start(self) -> None:
        self._unlogged.add(self.test_split)
        self._test_outputs = []

    def on_test_epoch_end(self) -> None:
        metrics = self.test_metrics.compute()
        self.test_metrics.reset()
        self.log_dict({f"{self.test_split}/{k}": v for k, v in metrics.items()})
        local = {
            key: torch.cat([o[key] for o in self._test_outputs]).cpu().numpy()
            for key in (self._test_outputs[0] if self._test_outputs else ())
        }
        self.test_results = {
            "metrics": {k: float(v) for k, v in metrics.items()},
            "outputs": gather_outputs(local),
        }
        self._test_outputs = []

    def configure_callbacks(self) -> list[pl.Callback]:
        """The metrics per source of a joint run (`data=multi`), whose datamodule names them."""
        names = getattr(getattr(self.trainer, "datamodule", None), "source_names", None)
        return [SourceMetrics(names)] if names else []

    def on_train_start(self) -> None:
        self._apply_freeze(announce=True)

    def on_train_epoch_start(self) -> None:
        self._unlogged.add("train")
        self._apply_freeze(announce=False)

    def _apply_freeze(self, announce: bool) -> None:
        """Trains the backbone from epoch `freeze_backbone_epochs` on, logging what trains."""
        trainable = self.current_epoch >= self.freeze_backbone_epochs
        changed = set_backbone_trainable(self.net, trainable)
        if (announce or changed) and self.trainer.is_global_zero:
            log.info("epoch %d: %s", self.current_epoch, parameter_summary(self.net))

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.net)

    def configure_optimizers(self) -> Any:
        params = param_groups(
            self.net, list(self.loss.parameters()), self.backbone_lr_scale, self.layer_decay
        )
        optimizer = self.optimizer_factory(params)
        for group in optimizer.param_groups:  # before a scheduler records the initial lrs
            group["lr"] *= group.get("lr_scale", 1.0)
        if self.scheduler_factory is None:
            return optimizer
        schedule = getattr(self.scheduler_factory, "func", self.scheduler_factory)
        interval = getattr(schedule, "interval", "epoch")
        if interval == "step":
            scheduler = self.scheduler_factory(
                optimizer,
                total_steps=self.trainer.estimated_stepping_batches,
                max_epochs=max(self.trainer.max_epochs or 1, 1),
            )
        else:
            scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["fer_config"] = self.config
        checkpoint["fer_val_results"] = self.val_results

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_results = checkpoint.get("fer_val_results", {})
