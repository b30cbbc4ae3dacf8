"""Whether a run continues, from which checkpoint, and on which samples: the decision a training
command makes before it fits (docs/resuming.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from fer_lightning.cli import in_multirun
from fer_lightning.data.split import RECORD_FILE
from fer_lightning.errors import ConfigError
from fer_lightning.files import write_text_atomic
from fer_lightning.runs.checkpoints import (
    CHECKPOINT_DIR,
    remove_interrupted_saves,
    resume_checkpoint,
    start_over,
)
from fer_lightning.runs.fault_tolerance import FaultTolerance
from fer_lightning.runs.state import LOG_ASIDE, csv_logs, set_aside_logs

log = logging.getLogger(__name__)


def checkpoint_to_resume(cfg: DictConfig, run_dir: Path, trainer: pl.Trainer) -> str | None:
    """Starts over (resume=false) or finds the checkpoint to continue from.

    A resumed run keeps its CSV logs out of CSVLogger's reach, which deletes them when it starts;
    FaultTolerance puts back the rows logged up to the checkpoint. It trains on the samples its
    checkpoint was trained on: `run_dir/split.json` (`RECORD_FILE`), the record the datamodule
    then reads; a run that starts from the beginning draws its split afresh and records it.
    """
    if cfg.get("ckpt_path") and cfg.get("init_from"):
        raise ConfigError(
            "ckpt_path and init_from exclude each other: ckpt_path continues a run, init_from "
            "starts a new one from its weights (docs/resuming.md)"
        )
    logs = csv_logs(trainer.loggers)
    # What an earlier attempt left for its continuation: no concern of a run from the beginning.
    leftovers = [run_dir / RECORD_FILE, *(file.with_name(file.name + LOG_ASIDE) for file in logs)]
    remove_interrupted_saves(run_dir)
    if not cfg.get("resume", True):
        start_over(run_dir, [*logs, *leftovers])
    ckpt_path = resume_checkpoint(cfg, run_dir)
    for callback in trainer.callbacks:
        if isinstance(callback, FaultTolerance):
            callback.resuming_from = ckpt_path  # the ranks agree on it once they can talk
    if ckpt_path:
        keep_split_record(Path(ckpt_path), run_dir / RECORD_FILE)
        set_aside_logs(logs)
        log.info("resuming from %s", ckpt_path)
        return ckpt_path
    _remove(leftovers)
    if in_multirun():
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
    return None


def split_record_of(checkpoint: str | Path) -> Path:
    """The split record of the run that saved `checkpoint`: `split.json` beside the
    `checkpoints/` folder holding it."""
    return Path(checkpoint).resolve().parent.parent / RECORD_FILE


def keep_split_record(checkpoint: Path, record: Path) -> None:
    """Makes `record` the split record of the run that saved `checkpoint`, or refuses.

    The run's own checkpoint: its record must exist. Another run's (`ckpt_path`): its record is
    copied in, and must equal one already here. Refusing where the record is missing keeps a
    changed dataset from giving a resumed run a new split, whose test part it had trained on.
    """
    source = split_record_of(checkpoint)
    if source == record.resolve():
        if not record.is_file():
            raise ConfigError(
                f"{record.parent} has checkpoints but no {RECORD_FILE}, the record of the samples "
                "they were trained on: restore it, or resume=false to start over with a new split"
            )
        return
    if not source.is_file():
        raise ConfigError(
            f"{checkpoint} has no {RECORD_FILE} beside its {CHECKPOINT_DIR}/ folder, the record of "
            "the samples it was trained on, so it cannot be continued: init_from="
            f"{checkpoint} starts a new run from its weights"
        )
    if record.is_file() and source.read_bytes() != record.read_bytes():
        raise ConfigError(
            f"{checkpoint} was trained on other samples than {record} records: continue it in its "
            "own run directory, or choose another hydra.run.dir"
        )
    _copy_record(source, record)


@rank_zero_only
def _copy_record(source: Path, record: Path) -> None:
    write_text_atomic(record, source.read_text(encoding="utf-8"))


@rank_zero_only
def _remove(leftovers: list[Path]) -> None:
    """A run that starts from the beginning continues nothing: the split record and the CSV rows
    set aside by an attempt that left no checkpoint (or failed before fitting) must not decide its
    samples or join its log."""
    for path in leftovers:
        path.unlink(missing_ok=True)
