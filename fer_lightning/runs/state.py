"""What an exact continuation needs beyond Lightning's checkpoints, and the CSV log's continuity.

`fer_lightning.runs.fault_tolerance.FaultTolerance` saves and restores these (docs/resuming.md): the
global RNG states (dropout), the running sums and metric states behind the epoch's logged values,
and the rows of the CSV log up to the checkpoint (CSVLogger deletes its file when a run starts, and
a killed run may have logged past its last checkpoint).
"""

from __future__ import annotations

import csv
import logging
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger, Logger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities import rank_zero_only

from fer_lightning.files import atomic_write
from fer_lightning.runs.lightning_internals import (
    States,
    adopt_csv_header,
    epoch_metric_states,
    epoch_sums,
)

LOG_ASIDE = ".resume"  # suffix of a CSV log kept from CSVLogger until the resumed run takes it

log = logging.getLogger(__name__)


def rng_states(device: torch.device) -> dict[str, Any]:
    """The global RNG states (dropout draws from torch's), as types a weights-only load accepts:
    the CPU's and, on a GPU, that of the process's own GPU only (a resumed run may see fewer
    GPUs, and under DDP each rank draws from its own)."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    own_gpu = device.type == "cuda" and torch.cuda.is_available()
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if own_gpu else None,
    }


def own_rng_states(saved: dict[str, Any] | list[dict[str, Any]], rank: int) -> dict[str, Any]:
    """This rank's entry of the states saved by rank (`FaultTolerance` gathers them). A run
    resumed on fewer ranks takes the entries of the first ones; a checkpoint of an earlier
    release holds one entry, whose GPU states are a list by device index."""
    if isinstance(saved, dict):
        return saved
    return saved[min(rank, len(saved) - 1)]


def set_rng_states(states: dict[str, Any], device: torch.device) -> None:
    random.setstate(states["python"])
    name, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    gpu = states["cuda"]
    if isinstance(gpu, list):  # every visible GPU's, by index: the one of this process, if saved
        gpu = gpu[device.index or 0] if len(gpu) > (device.index or 0) else None
    if gpu is not None and device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.set_rng_state(gpu, device)


def _cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    return [_cpu(v) for v in value]


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return [_to(v, device) for v in value]


def _on_cpu(states: States) -> States:
    return {key: {name: _cpu(value) for name, value in s.items()} for key, s in states.items()}


def epoch_state(trainer: pl.Trainer) -> dict[str, Any]:
    """What the epoch's logged values have accumulated so far, for a checkpoint within an epoch.

    The module's epoch values (`train/loss_epoch`, `train/acc`) are torchmetrics objects in the
    module, and Lightning keeps the running sums behind any tensor logged per epoch in its results;
    it checkpoints neither: a run resumed within an epoch would report means of the batches after
    the resume only.
    """
    return {"sums": _on_cpu(epoch_sums(trainer)), "metrics": _on_cpu(epoch_metric_states(trainer))}


def load_epoch_metrics(pl_module: pl.LightningModule, metrics: States) -> None:
    """Restores the states of the torchmetrics objects the epoch logged (before its next batch)."""
    for attribute, state in metrics.items():
        metric = pl_module.get_submodule(attribute)
        for name, value in state.items():
            setattr(metric, name, _to(value, pl_module.device))


def csv_log(logger: CSVLogger) -> Path:
    """The metrics file of a CSV logger (known before its writer exists, which deletes it)."""
    return Path(logger.log_dir) / ExperimentWriter.NAME_METRICS_FILE


def csv_logs(loggers: Iterable[Logger]) -> list[Path]:
    """The metrics files of the CSV loggers among `loggers`."""
    return [csv_log(logger) for logger in loggers if isinstance(logger, CSVLogger)]


@rank_zero_only
def set_aside_logs(files: Iterable[Path]) -> None:
    """Before a resumed fit: CSVLogger deletes its metrics file when it starts, so move it aside.

    `FaultTolerance` puts the rows logged up to the checkpoint back when the fit starts. A newer
    file wins over one already set aside (which the resumed run that set it aside never got to put
    back before it was interrupted).
    """
    for file in files:
        if file.is_file():
            os.replace(file, file.with_name(file.name + LOG_ASIDE))


def restore_logged_rows(logger: CSVLogger, through_step: float) -> None:
    """Puts back the rows set aside for `logger` whose step is at most `through_step`.

    Rows after the checkpoint are dropped: the resumed run logs them again.
    """
    target = csv_log(logger)
    aside = target.with_name(target.name + LOG_ASIDE)
    if not aside.is_file():
        return
    with aside.open(newline="") as file:
        reader = csv.DictReader(file)
        header = list(reader.fieldnames or ())
        rows = [row for row in reader if float(row["step"]) <= through_step]
    adopt_csv_header(logger, header)
    with atomic_write(target, "w", newline="") as file:
        out = csv.DictWriter(file, fieldnames=header)
        out.writeheader()
        out.writerows(rows)
    aside.unlink()


def warn_where_nondeterministic(device: torch.device) -> None:
    """`trainer.deterministic=true` on a GPU: deterministic kernels where CUDA has them, a
    warning where it has none. Strictly, the first backward through adaptive average pooling
    (SqueezeNet, MobileNet, EfficientNet, ResNet) would raise."""
    strict = torch.are_deterministic_algorithms_enabled() and (
        not torch.is_deterministic_algorithms_warn_only_enabled()
    )
    if strict and device.type == "cuda":
        torch.use_deterministic_algorithms(True, warn_only=True)
        log.info(
            "trainer.deterministic=true: warnings name the layers without a deterministic kernel"
        )
