"""The end of a run that tested a module: its `results/` folder (docs/run-directory.md), also
given to its loggers."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytorch_lightning as pl

from fer_lightning.loggers import log_results
from fer_lightning.module import MultiTaskModule
from fer_lightning.reports.results import device_description, experiment_row, write_reports

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Started:
    """When a run started: the wall-clock time for experiment.csv, a monotonic clock for its
    duration (unaffected by clock changes during the run)."""

    at: datetime = field(default_factory=lambda: datetime.now().astimezone())
    clock: float = field(default_factory=time.monotonic)

    def seconds(self) -> float:
        return time.monotonic() - self.clock


def write_results(
    trainer: pl.Trainer,
    module: MultiTaskModule,
    datamodule: pl.LightningDataModule,
    run_dir: Path,
    *,
    task: str,
    started: Started,
    history: Sequence[Mapping[str, float]],
    checkpoint: str,
    split: str = "test",
    tta: str | None = None,
) -> dict[str, float]:
    """Writes `run_dir/results/` from a module that `trainer` has just tested on `split`.

    Only the global-zero process writes; every process returns the test metrics (keys without the
    `<split>/` prefix that metrics.json gives them, docs/metrics.md).
    """
    if trainer.is_global_zero:
        experiment = experiment_row(
            module.config,
            datamodule.split_sizes,
            history,
            task=task,
            started=started.at,
            duration_s=started.seconds(),
            device=device_description(trainer),
            precision=str(trainer.precision),
            split=split,
            tta=tta,
            checkpoint=checkpoint,
        )
        write_reports(
            module.test_results,
            datamodule.sample_paths(split),
            run_dir / "results",
            datamodule.class_names,
            prefix=split,
            history=history,
            experiment=experiment,
            bootstrap=module.config.get("bootstrap"),
        )
        log.info("results written to %s", run_dir / "results")
        metrics = module.test_results["metrics"]
        log_results(trainer, {f"{split}/{k}": v for k, v in metrics.items()}, run_dir / "results")
    return module.test_results["metrics"]
