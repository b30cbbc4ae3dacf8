"""Whether a run continues, and from which checkpoint: the decision a training command makes
before it fits (docs/resuming.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fer_lightning.cli import in_multirun
from fer_lightning.runs.checkpoints import (
    CHECKPOINT_DIR,
    remove_interrupted_saves,
    resume_checkpoint,
    start_over,
)
from fer_lightning.runs.state import csv_logs, set_aside_logs

log = logging.getLogger(__name__)


def checkpoint_to_resume(cfg: DictConfig, run_dir: Path, trainer: pl.Trainer) -> str | None:
    """Starts over (resume=false) or finds the checkpoint to continue from.

    A resumed run keeps its CSV logs out of CSVLogger's reach, which deletes them when it starts;
    FaultTolerance puts back the rows logged up to the checkpoint.
    """
    logs = csv_logs(trainer.loggers)
    remove_interrupted_saves(run_dir)
    if not cfg.get("resume", True):
        start_over(run_dir, logs)
    ckpt_path = resume_checkpoint(cfg, run_dir)
    if ckpt_path:
        set_aside_logs(logs)
        log.info("resuming from %s", ckpt_path)
    elif in_multirun():
        log.info(
            "checkpoints go to %s; after an interruption, rerun the same command with "
            "hydra.sweep.dir=%s to resume every job",
            run_dir / CHECKPOINT_DIR,
            HydraConfig.get().sweep.dir,
        )
    else:
        log.info(
            "checkpoints go to %s; after an interruption, rerun the same command to resume",
            run_dir / CHECKPOINT_DIR,
        )
    return ckpt_path
