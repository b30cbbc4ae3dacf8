"""The end of a run that tests a checkpoint: which one, the test, and its `results/` folder
(docs/run-directory.md), also given to its loggers."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from fer_lightning.errors import ConfigError
from fer_lightning.loggers import log_results
from fer_lightning.module import MultiTaskModule
from fer_lightning.reports.results import device_description, experiment_row, write_reports
from fer_lightning.runs.checkpoints import CHECKPOINT_DIR

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
    test_data: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Writes `run_dir/results/` from a module that `trainer` has just tested on `split`;
    `test_data` is the data config it was tested on when that is not its training data's.

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
            test_data=test_data,
            scored_classes=len(datamodule.class_names),
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


def checkpoint_to_test(ckpt_path: str | None, run_dir: Path) -> str:
    """What `train=false` tests: `ckpt_path` if given, else the run's best checkpoint (the one
    `callbacks.model_checkpoint` kept, `best-*.ckpt`)."""
    if ckpt_path:
        return str(ckpt_path)
    folder = run_dir / CHECKPOINT_DIR
    best = sorted(folder.glob("best-*.ckpt"))
    if len(best) != 1:
        found = "no best checkpoint" if not best else f"{len(best)} best checkpoints"
        raise ConfigError(
            f"train=false tests the run's best checkpoint, but {folder} holds {found}: train "
            "this run first, or give ckpt_path=..."
        )
    return str(best[0])


def test_and_report(
    trainer: pl.Trainer,
    module: MultiTaskModule,
    datamodule: pl.LightningDataModule,
    run_dir: Path,
    *,
    started: Started,
    history: Sequence[Mapping[str, float]],
    checkpoint: str,
) -> dict[str, float]:
    """Tests `checkpoint` (the module's weights as they are if empty) on the test split and
    writes `results/` (`write_results`)."""
    trainer.test(module, datamodule=datamodule, ckpt_path=checkpoint or None, weights_only=True)
    return write_results(
        trainer,
        module,
        datamodule,
        run_dir,
        task="train",
        started=started,
        history=history,
        checkpoint=checkpoint,
    )
