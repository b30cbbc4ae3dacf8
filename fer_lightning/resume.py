"""What an exact continuation needs beyond Lightning's checkpoints, and the CSV log's continuity.

Used by `fer_lightning.callbacks.FaultTolerance`: the global RNG states (dropout), the running sums
and metric states behind the epoch's logged values, and the rows of the CSV log up to the
checkpoint (CSVLogger deletes its file when a run starts, and a killed run may have logged past its
last checkpoint).
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning.loggers import CSVLogger, Logger

LOG_ASIDE = ".resume"  # suffix of a CSV log kept from CSVLogger until the resumed run takes it


def rng_states() -> dict[str, Any]:
    """The global RNG states (dropout draws from torch's), as types a weights-only load accepts."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    name, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    return [_cpu(v) for v in value]


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return [_to(v, device) for v in value]


def epoch_state(trainer: pl.Trainer) -> dict[str, Any]:
    """What the epoch's logged values have accumulated so far, for a checkpoint within an epoch.

    Lightning keeps the running sums behind epoch means (`train/loss_epoch`) in its results and a
    logged torchmetrics object (`train/acc`) in the module, and checkpoints neither: a run resumed
    within an epoch would report means of the batches after the resume only.
    """
    sums, metrics = {}, {}
    for key, result in trainer.fit_loop.epoch_loop._results.items():
        if not result.meta.on_epoch:
            continue
        if result.is_tensor:
            sums[key] = {name: _cpu(value) for name, value in result.metric_state.items()}
        elif result.meta.metric_attribute:
            metrics[result.meta.metric_attribute] = {
                name: _cpu(value) for name, value in result.value.metric_state.items()
            }
    return {"sums": sums, "metrics": metrics}


def load_epoch_metrics(pl_module: pl.LightningModule, metrics: dict[str, Any]) -> None:
    """Restores the states of the torchmetrics objects the epoch logged (before its next batch)."""
    for attribute, state in metrics.items():
        metric = pl_module.get_submodule(attribute)
        for name, value in state.items():
            setattr(metric, name, _to(value, pl_module.device))


def add_epoch_sums(trainer: pl.Trainer, sums: dict[str, Any]) -> None:
    """Adds the saved sums to those of the first batch after a resume (exactly the same floating-
    point additions as without the interruption: the fresh sum of one batch is 0 + x = x)."""
    results = trainer.fit_loop.epoch_loop._results
    for key, saved in sums.items():
        if key not in results:
            continue
        result = results[key]
        extreme = result.meta.is_max_reduction or result.meta.is_min_reduction
        for name, before in saved.items():
            now = getattr(result, name)
            before = before.to(now.device)
            setattr(result, name, result.meta.reduce_fx(before, now) if extreme else before + now)


def csv_logs(loggers: Iterable[Logger]) -> list[Path]:
    """The metrics files of the CSV loggers among `loggers`."""
    return [Path(lg.log_dir) / "metrics.csv" for lg in loggers if isinstance(lg, CSVLogger)]


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
    writer = logger.experiment
    target = Path(writer.metrics_file_path)
    aside = target.with_name(target.name + LOG_ASIDE)
    if not aside.is_file():
        return
    with aside.open(newline="") as file:
        reader = csv.DictReader(file)
        header = list(reader.fieldnames or ())
        rows = [row for row in reader if float(row["step"]) <= through_step]
    temporary = target.with_name(f".{target.name}.tmp")
    with temporary.open("w", newline="") as file:
        out = csv.DictWriter(file, fieldnames=header)
        out.writeheader()
        out.writerows(rows)
    os.replace(temporary, target)
    writer.metrics_keys = header  # so the writer appends under this header (adding new columns)
    aside.unlink()
